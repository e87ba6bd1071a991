//! Speaking metrics: from the audio (speech, pauses, monologues) and, when
//! there is a transcript, from the words (pace, fillers, questions).

use std::collections::HashMap;

use super::transcribe::Line;
use crate::audio::vad::{self, Span};
use crate::text::{phrase_count, questions, words};

/// Metrics from the audio alone.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioMetrics {
    /// Length of the meeting.
    pub total_ms: i64,
    /// Time with speech.
    pub speech_ms: i64,
    /// `speech_ms / total_ms`.
    pub speech_ratio: f64,
    /// Silences between speech of at least [`vad::MIN_PAUSE_MS`].
    pub pause_count: i32,
    /// Their mean length.
    pub average_pause_ms: i64,
    /// The longest.
    pub longest_pause_ms: i64,
    /// Longest speech without a pause.
    pub longest_monologue_ms: i64,
}

/// Metrics of the speech spans of a recording `total_ms` long.
pub fn audio_metrics(total_ms: i64, spans: &[Span]) -> AudioMetrics {
    let speech_ms: i64 = spans.iter().map(|(s, e)| e - s).sum();
    let pauses: Vec<i64> = vad::pauses(spans).iter().map(|(s, e)| e - s).collect();
    AudioMetrics {
        total_ms,
        speech_ms,
        speech_ratio: if total_ms > 0 {
            speech_ms as f64 / total_ms as f64
        } else {
            0.0
        },
        pause_count: i32::try_from(pauses.len()).unwrap_or(i32::MAX),
        average_pause_ms: if pauses.is_empty() {
            0
        } else {
            pauses.iter().sum::<i64>() / pauses.len() as i64
        },
        longest_pause_ms: pauses.iter().copied().max().unwrap_or(0),
        longest_monologue_ms: spans.iter().map(|(s, e)| e - s).max().unwrap_or(0),
    }
}

/// Words per minute of speech estimated from `syllables` nuclei found in
/// `speech_ms` of speech ([`crate::audio::syllables`]); None under five
/// seconds of speech.
pub fn estimated_words_per_minute(syllables: i32, speech_ms: i64) -> Option<f64> {
    (speech_ms >= 5000).then(|| {
        f64::from(syllables) / crate::audio::syllables::SYLLABLES_PER_WORD * 60_000.0 / speech_ms as f64
    })
}

/// Metrics from a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TextMetrics {
    /// Words per minute of transcribed speech.
    pub words_per_minute: f64,
    /// Filler words, most frequent first.
    pub fillers: Vec<(String, i32)>,
    /// Questions asked.
    pub question_count: i32,
    /// Most words without a pause of a second or more.
    pub longest_monologue_words: i32,
    /// Words in the transcript.
    pub word_count: i32,
}

/// Metrics of transcript `lines` (meeting time) covering `speech_ms` of
/// speech, counting the phrases in `filler_words`.
pub fn text_metrics(lines: &[Line], speech_ms: i64, filler_words: &[String]) -> TextMetrics {
    let mut total_words = 0usize;
    let mut counts: HashMap<&str, i32> = HashMap::new();
    let mut question_count = 0;
    let mut longest = 0usize;
    let mut run = 0usize;
    let mut last_end: Option<i64> = None;
    for line in lines {
        let words = words(&line.text);
        total_words += words.len();
        for filler in filler_words {
            let found = phrase_count(&words, filler);
            if found > 0 {
                *counts.entry(filler.as_str()).or_default() += i32::try_from(found).unwrap_or(i32::MAX);
            }
        }
        question_count += questions(&line.text);
        if last_end.is_some_and(|end| line.start_ms - end >= vad::CUT_SILENCE_MS) {
            run = 0;
        }
        run += words.len();
        longest = longest.max(run);
        last_end = Some(line.end_ms);
    }
    let mut fillers: Vec<(String, i32)> = counts.into_iter().map(|(w, c)| (w.to_owned(), c)).collect();
    fillers.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    TextMetrics {
        words_per_minute: if speech_ms > 0 {
            total_words as f64 * 60_000.0 / speech_ms as f64
        } else {
            0.0
        },
        fillers,
        question_count,
        longest_monologue_words: i32::try_from(longest).unwrap_or(i32::MAX),
        word_count: i32::try_from(total_words).unwrap_or(i32::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(start_ms: i64, end_ms: i64, text: &str) -> Line {
        Line {
            start_ms,
            end_ms,
            text: text.into(),
            confidence: None,
        }
    }

    #[test]
    fn audio_metrics_follow_the_spans() {
        let m = audio_metrics(10_000, &[(0, 3000), (4000, 6000), (8000, 9000)]);
        assert_eq!(m.speech_ms, 6000);
        assert!((m.speech_ratio - 0.6).abs() < 1e-9);
        assert_eq!(
            (m.pause_count, m.average_pause_ms, m.longest_pause_ms),
            (2, 1500, 2000)
        );
        assert_eq!(m.longest_monologue_ms, 3000);
    }

    #[test]
    fn text_metrics_count_words_fillers_and_questions() {
        let fillers = vec!["um".to_owned(), "you know".to_owned()];
        let lines = [
            line(0, 5000, "Um, so what do you think? You know, um, it works."),
            line(5200, 9000, "Really? Yes."),
            line(12_000, 14_000, "Next topic."),
        ];
        let m = text_metrics(&lines, 60_000, &fillers);
        assert_eq!(m.fillers, vec![("um".to_owned(), 2), ("you know".to_owned(), 1)]);
        assert_eq!(m.question_count, 2);
        assert_eq!(m.longest_monologue_words, 13);
        assert!((m.words_per_minute - 15.0).abs() < 1e-9);
    }
}
