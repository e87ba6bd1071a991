//! The checks an answer is scored by, one function each: what it scores,
//! its weight and skill, and the feedback it gives. The table of weights is
//! in the parent module's documentation.

use super::Audio;
use crate::skills::Skill;
use crate::text;

/// One check's outcome.
pub(super) struct Check {
    /// The skill it scores.
    pub skill: Skill,
    /// Its weight; 0 for a note that scores nothing.
    pub weight: f64,
    /// 0 to 1.
    pub score: f64,
    /// The feedback, with the person's numbers.
    pub message: String,
    /// What to do, for the summary, when it fell short.
    pub advice: &'static str,
}

pub(super) fn pace_check(wpm: f64, min: f64, max: f64, estimated: bool) -> Check {
    let note = if estimated {
        " (estimated from the audio; a transcript gives an exact count)"
    } else {
        ""
    };
    let (score, message) = if wpm < min {
        (
            (1.0 - (min - wpm) / 40.0).max(0.0),
            format!(
                "You spoke at {wpm:.0} words per minute{note}, below the {min:.0}–{max:.0} target. \
                 Shorten the gaps between sentences so the point keeps moving."
            ),
        )
    } else if wpm > max {
        (
            (1.0 - (wpm - max) / 40.0).max(0.0),
            format!(
                "You spoke at {wpm:.0} words per minute{note}, above the {min:.0}–{max:.0} target. \
                 Pause after each key point, and drop a sentence rather than speed up."
            ),
        )
    } else {
        (
            1.0,
            format!(
                "Your pace was {wpm:.0} words per minute{note}, inside the {min:.0}–{max:.0} range \
                 listeners follow easily."
            ),
        )
    };
    Check {
        skill: Skill::Pacing,
        weight: 25.0,
        score,
        message,
        advice: if wpm > max {
            "slow down to the target pace by pausing after each point"
        } else {
            "pick up the pace by trimming the gaps between sentences"
        },
    }
}

pub(super) fn duration(took_ms: i64, target_ms: i64) -> Check {
    let off = (took_ms - target_ms) as f64 / target_ms as f64;
    let score = if off.abs() <= 0.15 {
        1.0
    } else {
        (1.0 - (off.abs() - 0.15) / 0.45).max(0.0)
    };
    let (took, target) = ((took_ms + 500) / 1000, (target_ms + 500) / 1000);
    let message = if off > 0.15 {
        format!(
            "You took {took} seconds for a {target}-second target. Cut to the point, the reason \
             and the next step, and stop there."
        )
    } else if off < -0.15 {
        format!(
            "You took {took} seconds for a {target}-second target. Use the time for one concrete \
             example."
        )
    } else {
        format!("You took {took} seconds for a {target}-second target: right on time.")
    };
    Check {
        skill: Skill::Conciseness,
        weight: 15.0,
        score,
        message,
        advice: if off > 0.0 {
            "finish within the target time"
        } else {
            "use the full time with a concrete example"
        },
    }
}

pub(super) fn pauses(audio: &Audio) -> Check {
    let longest = audio.longest_pause_ms as f64 / 1000.0;
    let (score, message) = if audio.long_pauses == 0 {
        (
            1.0,
            "No silence ran to 3 seconds: your pauses gave listeners time without losing them.".to_owned(),
        )
    } else {
        (
            (1.0 - 0.25 * f64::from(audio.long_pauses)).max(0.0),
            format!(
                "{} {} ran to 3 seconds or more (the longest {longest:.1} s). Bridge topics with a \
                 signpost such as “Next, the budget” instead of going quiet.",
                audio.long_pauses,
                if audio.long_pauses == 1 {
                    "silence"
                } else {
                    "silences"
                },
            ),
        )
    };
    Check {
        skill: Skill::Pauses,
        weight: 10.0,
        score,
        message,
        advice: "replace long silences with a short signpost",
    }
}

pub(super) fn fillers(total: i32, words: usize, per_100: f64, found: &[(String, i32)]) -> Check {
    let score = ((6.0 - per_100) / 5.0).clamp(0.0, 1.0);
    let top: Vec<String> = found.iter().take(2).map(|(w, _)| format!("“{w}”")).collect();
    let message = if total == 0 {
        format!("No filler words or hedges in {words} words.")
    } else if per_100 <= 1.0 {
        format!(
            "{total} filler {} in {words} words ({per_100:.1} per 100): crisp.",
            if total == 1 { "word" } else { "words" }
        )
    } else {
        format!(
            "{total} filler words and hedges in {words} words ({per_100:.1} per 100), mostly {}. \
             Under 2 per 100 sounds confident: replace each with a short pause.",
            top.join(" and ")
        )
    };
    Check {
        skill: Skill::FillerWords,
        weight: 20.0,
        score,
        message,
        advice: "replace filler words with a short pause",
    }
}

pub(super) fn length(words: usize, min: Option<u32>, max: Option<u32>) -> Check {
    let n = words as f64;
    let range = match (min, max) {
        (Some(min), Some(max)) => format!("{min}–{max} words"),
        (Some(min), None) => format!("at least {min} words"),
        (None, Some(max)) => format!("at most {max} words"),
        (None, None) => String::new(),
    };
    let (score, message) = match (min, max) {
        (Some(min), _) if n < f64::from(min) => (
            n / f64::from(min),
            format!("{words} words against {range}: add the detail a reader needs to act."),
        ),
        (_, Some(max)) if n > f64::from(max) => (
            f64::from(max) / n,
            format!("{words} words against {range}: lead with the decision and cut the background."),
        ),
        _ => (1.0, format!("{words} words, within {range}.")),
    };
    Check {
        skill: Skill::Conciseness,
        weight: 20.0,
        score,
        message,
        advice: if max.is_some_and(|max| n > f64::from(max)) {
            "cut the answer to the word limit, decision first"
        } else {
            "give enough detail to reach the word count"
        },
    }
}

pub(super) fn required(words: &[String], phrases: &[String]) -> Check {
    let missing: Vec<&String> = phrases
        .iter()
        .filter(|p| text::phrase_count(words, p) == 0)
        .collect();
    let used = phrases.len() - missing.len();
    let quote = |list: &[&String]| {
        list.iter()
            .map(|p| format!("“{p}”"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let message = if missing.is_empty() {
        format!(
            "You used every phrase the exercise asked for: {}.",
            quote(&phrases.iter().collect::<Vec<_>>())
        )
    } else {
        format!(
            "Missing: {}. Saying it makes the structure easy to hear.",
            quote(&missing)
        )
    };
    Check {
        skill: Skill::Clarity,
        weight: 15.0,
        score: used as f64 / phrases.len() as f64,
        message,
        advice: "use the phrases the exercise asks for",
    }
}

pub(super) fn avoided(words: &[String], avoid: &[String]) -> Check {
    let used: Vec<String> = avoid
        .iter()
        .filter(|p| text::phrase_count(words, p) > 0)
        .map(|p| format!("“{p}”"))
        .collect();
    let message = if used.is_empty() {
        "You kept clear of every word the exercise asked you to avoid.".to_owned()
    } else {
        format!(
            "You used {}, which the exercise asked you to avoid: say the plain thing instead.",
            used.join(" and ")
        )
    };
    Check {
        skill: Skill::Clarity,
        weight: 10.0,
        score: (1.0 - 0.5 * used.len() as f64).max(0.0),
        message,
        advice: "leave out the words the exercise lists to avoid",
    }
}

pub(super) fn question(questions: i32) -> Check {
    let (score, message) = if questions > 0 {
        (
            1.0,
            format!(
                "You asked {questions} {}, which invites the room in.",
                if questions == 1 { "question" } else { "questions" }
            ),
        )
    } else {
        (
            0.0,
            "The exercise called for a question and your answer had none: end with one that \
             invites a response."
                .to_owned(),
        )
    };
    Check {
        skill: Skill::Questioning,
        weight: 10.0,
        score,
        message,
        advice: "end with an open question",
    }
}

pub(super) fn sentences(per_sentence: f64) -> Check {
    let score = ((35.0 - per_sentence) / 15.0).clamp(0.0, 1.0);
    let message = if per_sentence <= 20.0 {
        format!("Your sentences averaged {per_sentence:.0} words: easy to follow.")
    } else {
        format!(
            "Your sentences averaged {per_sentence:.0} words. Split them at “and” and “which” to \
             stay under 20."
        )
    };
    Check {
        skill: Skill::Conciseness,
        weight: 10.0,
        score,
        message,
        advice: "keep sentences under 20 words",
    }
}

/// Mean words per sentence of `text`; None without words.
pub(super) fn words_per_sentence(text: &str) -> Option<f64> {
    let sentences: Vec<usize> = text
        .split(['.', '!', '?', ';'])
        .map(|s| text::words(s).len())
        .filter(|n| *n > 0)
        .collect();
    (!sentences.is_empty()).then(|| sentences.iter().sum::<usize>() as f64 / sentences.len() as f64)
}
