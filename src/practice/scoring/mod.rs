//! Rule-based feedback on an attempt: what was measured, a 0–100 score from
//! fixed weights, and feedback items a person can act on, each naming its
//! skill and quoting their own numbers. docs/practice-scoring.md is the
//! reader's version of this file.
//!
//! Each check scores from 0 to 1 and applies only when it can be measured
//! and the exercise asks for it; the attempt's score is the weighted mean of
//! the checks that apply, times 100:
//!
//! | check | skill | weight | full marks |
//! |---|---|---|---|
//! | pace | pacing | 25 | inside the rubric's words-per-minute range; 0 at 40 wpm outside |
//! | fillers and hedges | filler words | 20 | at most 1 per 100 words; 0 at 6 |
//! | length | conciseness | 20 | inside min–max words; proportionally less outside |
//! | duration | conciseness | 15 | within 15% of the target; 0 at 60% off |
//! | required phrases | clarity | 15 | every phrase used; the share used |
//! | pauses | pauses | 10 | no silence of 3 s or more; −0.25 for each one |
//! | words to avoid | clarity | 10 | none used; −0.5 for each one used |
//! | question | questioning | 10 | at least one question when one is expected |
//! | sentence length | conciseness | 10 | written answers averaging ≤ 20 words a sentence; 0 at 35 |

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

mod checks;

use checks::Check;

use super::entity::ExerciseKind;
use super::rubric::Rubric;
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::text;
use crate::timestamps::ms_to_duration;

/// Hedges count with the filler words: they make a point sound unsure.
pub const HEDGES: &[&str] = &[
    "i think",
    "i guess",
    "maybe",
    "perhaps",
    "probably",
    "i feel like",
];

/// A silence at least this long is a long pause.
pub const LONG_PAUSE_MS: i64 = 3000;

/// Scores at or above this are praise; below [`WEAK`], a warning.
const STRONG: f64 = 0.85;
const WEAK: f64 = 0.5;

/// What a recording's processing measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Audio {
    /// Time with speech.
    pub speech_ms: i64,
    /// Words per minute of speech: transcribed, else estimated.
    pub words_per_minute: Option<f64>,
    /// Whether that rate is the audio estimate.
    pub estimated: bool,
    /// Silences of [`LONG_PAUSE_MS`] or more.
    pub long_pauses: i32,
    /// The longest silence.
    pub longest_pause_ms: i64,
}

/// An answer to score.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    /// The exercise's kind.
    pub kind: ExerciseKind,
    /// Its rubric.
    pub rubric: &'a Rubric,
    /// What was written or said; None for a recording without transcript.
    pub text: Option<&'a str>,
    /// How long speaking took.
    pub duration_ms: Option<i64>,
    /// What a recording measured.
    pub audio: Option<Audio>,
}

/// What was measured on an attempt (stored with it, shown as
/// `AttemptMetrics`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metrics {
    /// Words in the answer.
    pub word_count: Option<i32>,
    /// Speaking rate.
    pub words_per_minute: Option<f64>,
    /// Whether it was estimated from the audio.
    pub pace_estimated: bool,
    /// Fillers and hedges per 100 words.
    pub fillers_per_100_words: Option<f64>,
    /// The fillers and hedges found, most frequent first.
    pub fillers: Vec<(String, i32)>,
    /// Time with speech.
    pub speech_ms: Option<i64>,
    /// Silences of three seconds or more.
    pub long_pause_count: i32,
    /// The longest silence.
    pub longest_pause_ms: Option<i64>,
    /// Questions asked.
    pub question_count: Option<i32>,
    /// Mean words per sentence.
    pub words_per_sentence: Option<f64>,
}

impl From<&Metrics> for pb::AttemptMetrics {
    fn from(m: &Metrics) -> Self {
        let Metrics {
            word_count,
            words_per_minute,
            pace_estimated,
            fillers_per_100_words,
            fillers,
            speech_ms,
            long_pause_count,
            longest_pause_ms,
            question_count,
            words_per_sentence,
        } = m;
        Self {
            word_count: *word_count,
            words_per_minute: *words_per_minute,
            pace_estimated: *pace_estimated,
            fillers_per_100_words: *fillers_per_100_words,
            fillers: fillers
                .iter()
                .map(|(word, count)| pb::WordCount {
                    word: word.clone(),
                    count: *count,
                })
                .collect(),
            speech_duration: speech_ms.map(ms_to_duration),
            long_pause_count: *long_pause_count,
            longest_pause: longest_pause_ms.map(ms_to_duration),
            question_count: *question_count,
            words_per_sentence: *words_per_sentence,
        }
    }
}

/// Tone of a feedback item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    /// Done well.
    Praise,
    /// Worth trying next time.
    Suggestion,
    /// Missed the goal.
    Warning,
}

/// One observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Its skill.
    pub skill: Skill,
    /// Its tone.
    pub tone: Tone,
    /// What to keep or change.
    pub message: String,
}

/// Feedback on an attempt, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Feedback {
    /// One or two things to change (or keep).
    pub summary: String,
    /// The observations.
    pub items: Vec<Item>,
    /// Whether an AI provider wrote part of it.
    pub ai_generated: bool,
    /// The attempt's score per skill, 0–100.
    pub skills: Vec<(Skill, f64)>,
}

impl From<&Feedback> for pb::Feedback {
    fn from(f: &Feedback) -> Self {
        let Feedback {
            summary,
            items,
            ai_generated,
            // Kept for the session's per-skill scores.
            skills: _,
        } = f;
        Self {
            summary: summary.clone(),
            items: items
                .iter()
                .map(|item| pb::FeedbackItem {
                    skill: pb::Skill::from(item.skill) as i32,
                    tone: match item.tone {
                        Tone::Praise => pb::FeedbackTone::Praise,
                        Tone::Suggestion => pb::FeedbackTone::Suggestion,
                        Tone::Warning => pb::FeedbackTone::Warning,
                    } as i32,
                    message: item.message.clone(),
                })
                .collect(),
            ai_generated: *ai_generated,
        }
    }
}

/// A scored attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// 0–100.
    pub score: f64,
    /// What was measured.
    pub metrics: Metrics,
    /// What to keep and change.
    pub feedback: Feedback,
}

/// Scores answers; `fillers` are the filler words counted (the same list
/// meetings are analysed with), to which [`HEDGES`] are added.
#[derive(Debug, Clone)]
pub struct Scorer {
    fillers: Vec<String>,
}

impl Scorer {
    /// A scorer counting `fillers` and the hedges.
    pub fn new(fillers: &[String]) -> Self {
        let mut all: Vec<String> = fillers.to_vec();
        all.extend(
            HEDGES
                .iter()
                .map(|h| (*h).to_owned())
                .filter(|h| !fillers.contains(h)),
        );
        Self { fillers: all }
    }

    /// Scores `answer`.
    pub fn score(&self, answer: &Answer<'_>) -> Scored {
        let rubric = answer.rubric;
        let mut metrics = Metrics::default();
        let mut outcomes: Vec<Check> = Vec::new();
        let words = answer.text.map(text::words);
        if let Some(audio) = &answer.audio {
            metrics.speech_ms = Some(audio.speech_ms);
            metrics.long_pause_count = audio.long_pauses;
            metrics.longest_pause_ms = Some(audio.longest_pause_ms);
            outcomes.push(checks::pauses(audio));
        }

        // Pace: measured on a recording, or words over the time given.
        let pace = match (&answer.audio, &words, answer.duration_ms) {
            (Some(audio), _, _) => audio.words_per_minute.map(|wpm| (wpm, audio.estimated)),
            (None, Some(words), Some(ms)) if answer.kind.is_spoken() && ms >= 5000 => {
                Some((words.len() as f64 * 60_000.0 / ms as f64, false))
            }
            _ => None,
        };
        if let Some((wpm, estimated)) = pace {
            metrics.words_per_minute = Some(round1(wpm));
            metrics.pace_estimated = estimated;
            if let (Some(min), Some(max)) = (rubric.min_wpm, rubric.max_wpm) {
                outcomes.push(checks::pace_check(wpm, min, max, estimated));
            }
        }
        if let (Some(target), Some(took)) = (rubric.target_duration_ms, answer.duration_ms) {
            outcomes.push(checks::duration(took, target));
        }

        match (&words, answer.text) {
            (Some(words), Some(text)) => {
                let count = words.len();
                metrics.word_count = Some(i32::try_from(count).unwrap_or(i32::MAX));
                let found = self.fillers(words);
                let filler_total: i32 = found.iter().map(|(_, n)| n).sum();
                let per_100 = if count > 0 {
                    f64::from(filler_total) * 100.0 / count as f64
                } else {
                    0.0
                };
                metrics.fillers_per_100_words = Some(round1(per_100));
                metrics.fillers = found.clone();
                let questions = text::questions(text);
                metrics.question_count = Some(questions);
                if count > 0 {
                    outcomes.push(checks::fillers(filler_total, count, per_100, &found));
                }
                if rubric.min_words.is_some() || rubric.max_words.is_some() {
                    outcomes.push(checks::length(count, rubric.min_words, rubric.max_words));
                }
                if !rubric.required_phrases.is_empty() {
                    outcomes.push(checks::required(words, &rubric.required_phrases));
                }
                if !rubric.avoid_words.is_empty() {
                    outcomes.push(checks::avoided(words, &rubric.avoid_words));
                }
                if rubric.expect_question {
                    outcomes.push(checks::question(questions));
                }
                if !answer.kind.is_spoken()
                    && let Some(per_sentence) = checks::words_per_sentence(text)
                {
                    metrics.words_per_sentence = Some(round1(per_sentence));
                    outcomes.push(checks::sentences(per_sentence));
                }
            }
            _ => outcomes.push(Check {
                skill: Skill::FillerWords,
                weight: 0.0,
                score: 1.0,
                message: "Filler words and phrasing need a transcript, and this recording has none: \
                          transcription is turned off. Pace and pauses were measured from the audio."
                    .into(),
                advice: "",
            }),
        }
        finish(outcomes, metrics)
    }

    /// The fillers and hedges in `words`, most frequent first.
    fn fillers(&self, words: &[String]) -> Vec<(String, i32)> {
        let mut found: Vec<(String, i32)> = self
            .fillers
            .iter()
            .filter_map(|filler| {
                let n = text::phrase_count(words, filler);
                (n > 0).then(|| (filler.clone(), i32::try_from(n).unwrap_or(i32::MAX)))
            })
            .collect();
        found.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        found
    }
}

fn finish(checks: Vec<Check>, metrics: Metrics) -> Scored {
    let total: f64 = checks.iter().map(|c| c.weight).sum();
    let score = if total > 0.0 {
        checks.iter().map(|c| c.weight * c.score).sum::<f64>() / total * 100.0
    } else {
        0.0
    };
    let mut by_skill: BTreeMap<Skill, (f64, f64)> = BTreeMap::new();
    for check in checks.iter().filter(|c| c.weight > 0.0) {
        let entry = by_skill.entry(check.skill).or_default();
        entry.0 += check.weight * check.score;
        entry.1 += check.weight;
    }
    let mut to_change: Vec<&Check> = checks
        .iter()
        .filter(|c| c.weight > 0.0 && c.score < STRONG)
        .collect();
    to_change.sort_by(|a, b| (a.score * a.weight - a.weight).total_cmp(&(b.score * b.weight - b.weight)));
    let score = round1(score);
    let summary = match to_change.as_slice() {
        [] if checks.iter().any(|c| c.weight > 0.0) => {
            format!("Score {score:.0}: every target met. Keep this up and try the next exercise.")
        }
        [] => "Nothing in this answer could be measured against the exercise.".to_owned(),
        [one] => format!("Score {score:.0}. Next time: {}.", one.advice),
        [one, two, ..] => format!("Score {score:.0}. Next time: {}; and {}.", one.advice, two.advice),
    };
    let items = checks
        .iter()
        .map(|c| Item {
            skill: c.skill,
            tone: if c.weight == 0.0 {
                Tone::Suggestion
            } else if c.score >= STRONG {
                Tone::Praise
            } else if c.score >= WEAK {
                Tone::Suggestion
            } else {
                Tone::Warning
            },
            message: c.message.clone(),
        })
        .collect();
    Scored {
        score,
        metrics,
        feedback: Feedback {
            summary,
            items,
            ai_generated: false,
            skills: by_skill
                .into_iter()
                .map(|(skill, (sum, weight))| (skill, round1(sum / weight * 100.0)))
                .collect(),
        },
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scorer() -> Scorer {
        Scorer::new(&["um".into(), "like".into(), "you know".into(), "basically".into()])
    }

    fn written<'a>(rubric: &'a Rubric, text: &'a str) -> Answer<'a> {
        Answer {
            kind: ExerciseKind::Rewrite,
            rubric,
            text: Some(text),
            duration_ms: None,
            audio: None,
        }
    }

    #[test]
    fn a_clean_written_answer_meets_every_target() {
        let rubric = Rubric {
            max_words: Some(30),
            required_phrases: vec!["14 march".into()],
            avoid_words: vec!["probably".into()],
            ..Rubric::default()
        };
        let scored = scorer().score(&written(
            &rubric,
            "We are moving the launch to 14 March. Finance and design agree.",
        ));
        assert_eq!(scored.score, 100.0, "{scored:#?}");
        assert!(scored.feedback.items.iter().all(|i| i.tone == Tone::Praise));
        assert_eq!(scored.metrics.word_count, Some(12));
    }

    #[test]
    fn the_score_follows_the_documented_weights() {
        // 40 words against at most 20 (length 20/40 = 0.5, weight 20); the
        // phrase missing (0, weight 15); "basically" twice in 40 words, 5 per
        // 100 (0.2, weight 20); one avoided word used (0.5, weight 10); one
        // sentence of 40 words (0, weight 10).
        let rubric = Rubric {
            max_words: Some(20),
            required_phrases: vec!["14 march".into()],
            avoid_words: vec!["synergy".into()],
            ..Rubric::default()
        };
        let text = format!("basically basically synergy {}", "word ".repeat(37));
        let scored = scorer().score(&written(&rubric, &text));
        let expected = (20.0 * 0.5 + 15.0 * 0.0 + 20.0 * 0.2 + 10.0 * 0.5 + 10.0 * 0.0) / 75.0 * 100.0;
        assert!(
            (scored.score - expected).abs() < 0.1,
            "{} vs {expected}",
            scored.score
        );
        assert!(
            scored.feedback.summary.contains("Next time"),
            "{}",
            scored.feedback.summary
        );
        // Per skill: conciseness from length and sentences.
        let conciseness = scored
            .feedback
            .skills
            .iter()
            .find(|(s, _)| *s == Skill::Conciseness)
            .unwrap()
            .1;
        assert!(
            (conciseness - (20.0 * 0.5) / 30.0 * 100.0).abs() < 0.1,
            "{conciseness}"
        );
    }

    #[test]
    fn a_recording_without_transcript_is_scored_on_pace_pauses_and_time() {
        let rubric = Rubric {
            min_wpm: Some(130.0),
            max_wpm: Some(160.0),
            target_duration_ms: Some(60_000),
            ..Rubric::default()
        };
        let scored = scorer().score(&Answer {
            kind: ExerciseKind::Speaking,
            rubric: &rubric,
            text: None,
            duration_ms: Some(62_000),
            audio: Some(Audio {
                speech_ms: 50_000,
                words_per_minute: Some(180.0),
                estimated: true,
                long_pauses: 1,
                longest_pause_ms: 3400,
            }),
        });
        // Pace 0.5 (20 over), time 1, pauses 0.75: (25*.5 + 15 + 10*.75) / 50.
        assert!((scored.score - 70.0).abs() < 0.1, "{}", scored.score);
        let pace = &scored
            .feedback
            .items
            .iter()
            .find(|i| i.skill == Skill::Pacing)
            .unwrap()
            .message;
        assert!(
            pace.contains("180 words per minute") && pace.contains("estimated"),
            "{pace}"
        );
        assert!(
            scored
                .feedback
                .items
                .iter()
                .any(|i| i.skill == Skill::FillerWords && i.message.contains("transcript")),
            "{:#?}",
            scored.feedback.items
        );
    }
}
