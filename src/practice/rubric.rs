//! How an attempt is scored: the rubric of an exercise, checked as an admin
//! saves it.

use serde::{Deserialize, Serialize};

use crate::error::{AppResult, Violations};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Most required phrases or words to avoid in a rubric.
const MAX_PHRASES: usize = 30;
/// Longest phrase in a rubric.
const MAX_PHRASE: usize = 100;
/// Slowest and fastest speaking rates a rubric may name.
const WPM_RANGE: std::ops::RangeInclusive<f64> = 60.0..=300.0;
/// Longest target duration of an answer.
const MAX_TARGET_MS: i64 = 30 * 60 * 1000;

/// How an attempt is scored; unset numbers are not checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Rubric {
    /// Fewest words expected.
    pub min_words: Option<u32>,
    /// Most words expected.
    pub max_words: Option<u32>,
    /// Slowest good rate, words per minute.
    pub min_wpm: Option<f64>,
    /// Fastest good rate, words per minute.
    pub max_wpm: Option<f64>,
    /// Phrases the answer should contain.
    pub required_phrases: Vec<String>,
    /// Words to avoid besides fillers.
    pub avoid_words: Vec<String>,
    /// Whether a question is expected.
    pub expect_question: bool,
    /// How long the answer should take.
    pub target_duration_ms: Option<i64>,
}

impl Rubric {
    /// Validates a rubric, reporting violations under `at`.
    pub fn parse(rubric: &pb::Rubric, at: &str) -> AppResult<Self> {
        let mut bad = Violations::default();
        let path = |field: &str| format!("{at}.{field}");
        let count = |bad: &mut Violations, field: &str, value: i32| -> Option<u32> {
            match u32::try_from(value) {
                Ok(0) => None,
                Ok(n) if n <= 10_000 => Some(n),
                _ => {
                    bad.add(path(field), "must be from 0 (not checked) to 10000");
                    None
                }
            }
        };
        let min_words = count(&mut bad, "min_words", rubric.min_words);
        let max_words = count(&mut bad, "max_words", rubric.max_words);
        if let (Some(min), Some(max)) = (min_words, max_words)
            && min > max
        {
            bad.add(path("min_words"), format!("must not exceed max_words ({max})"));
        }
        let rate = |bad: &mut Violations, field: &str, value: f64| -> Option<f64> {
            if value == 0.0 {
                None
            } else if WPM_RANGE.contains(&value) {
                Some(value)
            } else {
                bad.add(
                    path(field),
                    "must be 0 (not checked) or from 60 to 300 words per minute",
                );
                None
            }
        };
        let min_wpm = rate(&mut bad, "min_words_per_minute", rubric.min_words_per_minute);
        let max_wpm = rate(&mut bad, "max_words_per_minute", rubric.max_words_per_minute);
        if let (Some(min), Some(max)) = (min_wpm, max_wpm)
            && min > max
        {
            bad.add(
                path("min_words_per_minute"),
                format!("must not exceed max_words_per_minute ({max})"),
            );
        }
        let required_phrases = phrases(&mut bad, &path("required_phrases"), &rubric.required_phrases);
        let avoid_words = phrases(&mut bad, &path("avoid_words"), &rubric.avoid_words);
        let target = match &rubric.target_duration {
            Some(d) => bad.check(timestamps::duration_to_ms(&path("target_duration"), d))?,
            None => Some(0),
        };
        if target.is_some_and(|ms| ms > MAX_TARGET_MS) {
            bad.add(path("target_duration"), "must be at most 30 minutes");
        }
        bad.finish(|| {
            Some(Self {
                min_words,
                max_words,
                min_wpm,
                max_wpm,
                required_phrases,
                avoid_words,
                expect_question: rubric.expect_question,
                target_duration_ms: target.filter(|ms| *ms > 0),
            })
        })
    }

    /// The rubric as an API message.
    pub fn to_proto(&self) -> pb::Rubric {
        let Self {
            min_words,
            max_words,
            min_wpm,
            max_wpm,
            required_phrases,
            avoid_words,
            expect_question,
            target_duration_ms,
        } = self;
        let count = |n: &Option<u32>| n.map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX));
        pb::Rubric {
            min_words: count(min_words),
            max_words: count(max_words),
            min_words_per_minute: min_wpm.unwrap_or(0.0),
            max_words_per_minute: max_wpm.unwrap_or(0.0),
            required_phrases: required_phrases.clone(),
            avoid_words: avoid_words.clone(),
            expect_question: *expect_question,
            target_duration: target_duration_ms.map(timestamps::ms_to_duration),
        }
    }
}

fn phrases(bad: &mut Violations, field: &str, raw: &[String]) -> Vec<String> {
    if raw.len() > MAX_PHRASES {
        bad.add(field, format!("must hold at most {MAX_PHRASES} entries"));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (i, phrase) in raw.iter().enumerate() {
        let phrase = phrase.trim().to_lowercase();
        if phrase.is_empty() || phrase.chars().count() > MAX_PHRASE || phrase.chars().any(char::is_control) {
            bad.add(
                format!("{field}[{i}]"),
                format!("must be 1 to {MAX_PHRASE} characters of plain text"),
            );
        } else if out.contains(&phrase) {
            bad.add(format!("{field}[{i}]"), "is listed twice");
        } else {
            out.push(phrase);
        }
    }
    out
}
