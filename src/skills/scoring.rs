//! The scoring model: how a meeting's analysis and a completed practice
//! session become 0–100 scores per skill. docs/scoring.md is the reader's
//! version, with the reasoning behind each curve.
//!
//! A meeting is scored from what its analysis measured ([`Measured`]):
//!
//! | skill | from | 100 | 0 |
//! |---|---|---|---|
//! | pacing | words per minute (transcript, else the audio estimate) | 130–160 | 40 outside that range |
//! | filler words | fillers per 100 words (needs a transcript) | ≤ 1 | ≥ 6 |
//! | pauses | the longest silence, and pauses per minute of speech | ≤ 3 s, 2–20 a minute | ≥ 8 s, none or ≥ 40 a minute |
//! | conciseness | the longest stretch of speech | ≤ 60 s | ≥ 3 min |
//! | questioning | questions per ten minutes (a transcript, ≥ 5 min) | ≥ 2 | none |
//!
//! Between the ends each curve is linear. A skill the recording cannot
//! measure is left out, not guessed: no transcript, no filler or question
//! score; clarity and listening have no meeting signal yet.
//!
//! A practice session is scored from the best scored attempt at each
//! exercise: its score is their mean, and its score in a skill the mean of
//! those attempts' scores in that skill.

use std::collections::BTreeMap;

use super::Skill;

/// The pace most listeners follow best, words per minute.
pub const PACE: (f64, f64) = (130.0, 160.0);

/// What a meeting's analysis measured, as the numbers the scoring model,
/// recommendations and prompts reason with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measured {
    /// Words per minute: from the transcript, else estimated from the audio.
    pub words_per_minute: Option<f64>,
    /// Whether that rate is the audio estimate.
    pub pace_estimated: bool,
    /// Filler words per 100 words (needs a transcript).
    pub fillers_per_100_words: Option<f64>,
    /// Filler words counted (needs a transcript).
    pub filler_count: Option<i32>,
    /// The most frequent fillers.
    pub top_fillers: Vec<String>,
    /// Pauses counted (silences of 0.3 s or more between speech).
    pub pause_count: i32,
    /// The longest pause.
    pub longest_pause_ms: i64,
    /// Time with speech.
    pub speech_ms: i64,
    /// The longest stretch of speech.
    pub longest_monologue_ms: i64,
    /// The most words in one stretch (needs a transcript).
    pub longest_monologue_words: Option<i32>,
    /// Questions asked (needs a transcript).
    pub questions: Option<i32>,
    /// Questions per ten minutes of meeting (needs a transcript and a
    /// meeting of a minute or more).
    pub questions_per_10_minutes: Option<f64>,
    /// Share of the meeting with speech.
    pub speech_ratio: f64,
    /// Length of the meeting.
    pub total_ms: i64,
}

fn linear(value: f64, full: f64, zero: f64) -> f64 {
    (((value - zero) / (full - zero)).clamp(0.0, 1.0) * 1000.0).round() / 10.0
}

/// Pacing: 100 inside [`PACE`], 2.5 points off per word per minute outside.
pub fn pacing(words_per_minute: f64) -> f64 {
    let outside = if words_per_minute < PACE.0 {
        PACE.0 - words_per_minute
    } else {
        (words_per_minute - PACE.1).max(0.0)
    };
    linear(outside, 0.0, 40.0)
}

/// Filler words: 100 at one per 100 words or fewer, 0 at six.
pub fn filler_words(per_100_words: f64) -> f64 {
    linear(per_100_words, 1.0, 6.0)
}

/// Pauses: the lower of the longest silence's score (100 up to 3 s, 0 from
/// 8 s) and the frequency's (100 for 2 to 20 pauses a minute of speech;
/// fewer is speech without breaks, more is choppy). The frequency counts
/// only with a minute of speech or more.
pub fn pauses(longest_pause_ms: i64, pause_count: i32, speech_ms: i64) -> f64 {
    let long = linear(longest_pause_ms as f64 / 1000.0, 3.0, 8.0);
    if speech_ms < 60_000 {
        return long;
    }
    let per_minute = f64::from(pause_count) * 60_000.0 / speech_ms as f64;
    let frequency = if per_minute < 2.0 {
        linear(per_minute, 2.0, 0.0)
    } else {
        linear(per_minute, 20.0, 40.0)
    };
    long.min(frequency)
}

/// Conciseness: 100 for a longest stretch of a minute or less, 0 from
/// three minutes.
pub fn conciseness(longest_monologue_ms: i64) -> f64 {
    linear(longest_monologue_ms as f64 / 1000.0, 60.0, 180.0)
}

/// Questioning: 100 from two questions every ten minutes, 0 for none.
pub fn questioning(per_10_minutes: f64) -> f64 {
    linear(per_10_minutes, 2.0, 0.0)
}

/// The scores of a meeting, one per skill it measured.
pub fn meeting(m: &Measured) -> Vec<(Skill, f64)> {
    let mut scores = Vec::new();
    if m.speech_ms == 0 {
        return scores;
    }
    if let Some(wpm) = m.words_per_minute {
        scores.push((Skill::Pacing, pacing(wpm)));
    }
    if let Some(per_100) = m.fillers_per_100_words {
        scores.push((Skill::FillerWords, filler_words(per_100)));
    }
    scores.push((
        Skill::Pauses,
        pauses(m.longest_pause_ms, m.pause_count, m.speech_ms),
    ));
    scores.push((Skill::Conciseness, conciseness(m.longest_monologue_ms)));
    if let Some(per_10) = m.questions_per_10_minutes.filter(|_| m.total_ms >= 5 * 60_000) {
        scores.push((Skill::Questioning, questioning(per_10)));
    }
    scores
}

/// A scored attempt, as a session's scores are made from it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptScores<'a> {
    /// The exercise it answered.
    pub exercise: &'a str,
    /// Its score.
    pub score: f64,
    /// Its score per skill.
    pub skills: &'a [(Skill, f64)],
}

/// A session's score and per-skill scores.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionScores {
    /// The mean of the best attempt at each exercise.
    pub score: f64,
    /// Per skill, the mean of those attempts' scores in it.
    pub skills: BTreeMap<Skill, f64>,
}

/// The scores of a session from its scored attempts; None without any.
pub fn session(attempts: &[AttemptScores<'_>]) -> Option<SessionScores> {
    let mut best: BTreeMap<&str, &AttemptScores<'_>> = BTreeMap::new();
    for attempt in attempts {
        if best.get(attempt.exercise).is_none_or(|b| b.score < attempt.score) {
            best.insert(attempt.exercise, attempt);
        }
    }
    if best.is_empty() {
        return None;
    }
    let score = best.values().map(|a| a.score).sum::<f64>() / best.len() as f64;
    let mut sums: BTreeMap<Skill, (f64, f64)> = BTreeMap::new();
    for attempt in best.values() {
        for (skill, value) in attempt.skills {
            let entry = sums.entry(*skill).or_default();
            entry.0 += value;
            entry.1 += 1.0;
        }
    }
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Some(SessionScores {
        score: round(score),
        skills: sums
            .into_iter()
            .map(|(skill, (sum, n))| (skill, round(sum / n)))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_curve_is_full_in_its_band_and_linear_outside() {
        assert_eq!(
            (pacing(145.0), pacing(130.0), pacing(160.0)),
            (100.0, 100.0, 100.0)
        );
        assert_eq!(
            (pacing(180.0), pacing(110.0), pacing(200.0), pacing(60.0)),
            (50.0, 50.0, 0.0, 0.0)
        );
        assert_eq!(
            (filler_words(0.5), filler_words(3.5), filler_words(9.0)),
            (100.0, 50.0, 0.0)
        );
        assert_eq!(
            (conciseness(45_000), conciseness(120_000), conciseness(200_000)),
            (100.0, 50.0, 0.0)
        );
        assert_eq!(
            (questioning(3.0), questioning(1.0), questioning(0.0)),
            (100.0, 50.0, 0.0)
        );
    }

    #[test]
    fn pauses_score_long_silences_and_their_absence() {
        // Ten minutes of speech with 100 pauses (10 a minute), longest 2 s.
        assert_eq!(pauses(2000, 100, 600_000), 100.0);
        // A 5.5 s silence halves it.
        assert_eq!(pauses(5500, 100, 600_000), 50.0);
        // One pause a minute: speech without breaks.
        assert_eq!(pauses(1000, 10, 600_000), 50.0);
        // 30 a minute: choppy.
        assert_eq!(pauses(1000, 300, 600_000), 50.0);
        // Under a minute of speech, only the longest silence counts.
        assert_eq!(pauses(1000, 0, 30_000), 100.0);
    }

    #[test]
    fn a_meeting_is_scored_on_what_it_measured_and_nothing_else() {
        let audio_only = Measured {
            words_per_minute: Some(180.0),
            pace_estimated: true,
            pause_count: 60,
            longest_pause_ms: 2000,
            speech_ms: 360_000,
            longest_monologue_ms: 90_000,
            total_ms: 600_000,
            ..Measured::default()
        };
        let scores = meeting(&audio_only);
        let skills: Vec<Skill> = scores.iter().map(|(s, _)| *s).collect();
        assert_eq!(skills, [Skill::Pacing, Skill::Pauses, Skill::Conciseness]);
        assert_eq!(scores[0].1, 50.0);
        assert_eq!(scores[2].1, 75.0);
        let transcribed = Measured {
            fillers_per_100_words: Some(2.0),
            questions_per_10_minutes: Some(1.5),
            ..audio_only
        };
        let scores = meeting(&transcribed);
        assert!(scores.contains(&(Skill::FillerWords, 80.0)) && scores.contains(&(Skill::Questioning, 75.0)));
        assert!(
            meeting(&Measured::default()).is_empty(),
            "silence measures nothing"
        );
    }

    #[test]
    fn a_session_scores_each_exercise_by_its_best_attempt() {
        let a = [(Skill::Pacing, 60.0), (Skill::Clarity, 80.0)];
        let b = [(Skill::Pacing, 90.0)];
        let c = [(Skill::Clarity, 40.0)];
        let scores = session(&[
            AttemptScores {
                exercise: "one",
                score: 70.0,
                skills: &a,
            },
            AttemptScores {
                exercise: "one",
                score: 90.0,
                skills: &b,
            },
            AttemptScores {
                exercise: "two",
                score: 40.0,
                skills: &c,
            },
        ])
        .unwrap();
        assert_eq!(scores.score, 65.0);
        assert_eq!(scores.skills[&Skill::Pacing], 90.0);
        assert_eq!(scores.skills[&Skill::Clarity], 40.0);
        assert!(session(&[]).is_none());
    }
}
