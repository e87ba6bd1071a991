//! Exercise prompts are minijinja templates rendered per person from a
//! documented, versioned context ([`PromptContext`]; docs/prompt-context.md
//! lists every variable with an example).
//!
//! Rendering is strict and sandboxed: an undefined variable is an error
//! (found when a module is saved, by rendering against a full and an empty
//! sample context), nothing is ever loaded (minijinja is built without
//! multi-template support, so `include`, `import` and `extends` are not
//! even statements), every render has a fuel budget that bounds its work,
//! and its output is capped.

use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

use super::entity::ExerciseKind;
use super::rubric::Rubric;

/// The version of [`PromptContext`]; templates may read it as
/// `context_version`. Raised when a variable is removed or changes meaning.
pub const CONTEXT_VERSION: u32 = 1;

/// Work one render may do (minijinja fuel: about one unit per instruction).
const FUEL: u64 = 20_000;

/// Longest rendered prompt, in characters.
pub const MAX_PROMPT: usize = 4000;

/// Everything a prompt template may read.
#[derive(Debug, Clone, Serialize)]
pub struct PromptContext {
    /// [`CONTEXT_VERSION`].
    pub context_version: u32,
    /// The person.
    pub user: UserContext,
    /// Signals from the meeting's analysis.
    pub signals: Signals,
    /// The meeting the practice is about.
    pub meeting: MeetingContext,
    /// The exercise's targets (from its rubric).
    pub targets: Targets,
    /// The exercise itself.
    pub exercise: ExerciseContext,
}

/// The person, from their profile.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserContext {
    /// Display name, e.g. "Ada Lovelace".
    pub display_name: String,
    /// The first word of the display name, e.g. "Ada".
    pub first_name: String,
    /// Job title, e.g. "Engineering manager"; may be empty.
    pub job_title: String,
    /// Usual role in meetings, e.g. "facilitator"; may be empty.
    pub meeting_role: String,
    /// Goals from onboarding.
    pub goals: Vec<String>,
    /// Kinds of meetings attended, e.g. "standup".
    pub meeting_types: Vec<String>,
    /// "beginner", "intermediate", "advanced" or empty.
    pub experience_level: String,
    /// BCP 47 language tag; may be empty.
    pub locale: String,
    /// Focus skills, e.g. "filler_words".
    pub focus_skills: Vec<String>,
}

/// What the meeting's analysis measured; `available` is false when there is
/// no analysed meeting, and each value is none when it was not measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Signals {
    /// Whether an analysis exists.
    pub available: bool,
    /// Words per minute, rounded.
    pub words_per_minute: Option<i64>,
    /// Whether that rate was estimated from the audio alone.
    pub pace_estimated: bool,
    /// Filler words per 100 words, one decimal.
    pub fillers_per_100_words: Option<f64>,
    /// Filler words counted.
    pub filler_count: Option<i32>,
    /// The most frequent fillers, most frequent first (at most 3).
    pub top_fillers: Vec<String>,
    /// Pauses counted.
    pub pause_count: i32,
    /// The longest pause, in seconds (one decimal).
    pub longest_pause_seconds: f64,
    /// The longest stretch of speech, in seconds.
    pub longest_monologue_seconds: i64,
    /// The most words in one stretch of speech.
    pub longest_monologue_words: Option<i32>,
    /// Questions asked.
    pub questions: Option<i32>,
    /// Questions per ten minutes, one decimal.
    pub questions_per_10_minutes: Option<f64>,
    /// Share of the meeting with speech, in percent.
    pub speech_percent: i64,
    /// Length of the meeting, in whole minutes.
    pub duration_minutes: i64,
}

/// The meeting the signals come from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MeetingContext {
    /// Whether there is one.
    pub available: bool,
    /// Its title.
    pub title: String,
    /// When it took place (or was created), `YYYY-MM-DD`.
    pub date: String,
    /// Its resource name, `meetings/{id}`.
    pub name: String,
}

/// The exercise's targets, from its rubric; none when not checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Targets {
    /// Fewest words.
    pub min_words: Option<u32>,
    /// Most words.
    pub max_words: Option<u32>,
    /// Slowest good rate.
    pub min_wpm: Option<i64>,
    /// Fastest good rate.
    pub max_wpm: Option<i64>,
    /// Target length of the answer, in seconds.
    pub target_seconds: Option<i64>,
    /// Phrases to use.
    pub required_phrases: Vec<String>,
    /// Words to avoid.
    pub avoid_words: Vec<String>,
    /// Whether a question is expected.
    pub expect_question: bool,
}

impl From<&Rubric> for Targets {
    fn from(rubric: &Rubric) -> Self {
        Self {
            min_words: rubric.min_words,
            max_words: rubric.max_words,
            min_wpm: rubric.min_wpm.map(|r| r.round() as i64),
            max_wpm: rubric.max_wpm.map(|r| r.round() as i64),
            target_seconds: rubric.target_duration_ms.map(|ms| (ms + 500) / 1000),
            required_phrases: rubric.required_phrases.clone(),
            avoid_words: rubric.avoid_words.clone(),
            expect_question: rubric.expect_question,
        }
    }
}

/// The exercise being rendered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ExerciseContext {
    /// Its id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its difficulty.
    pub difficulty: i32,
    /// `speaking`, `rewrite`, `reflection` or `scenario`.
    pub kind: String,
}

/// Why a template cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct TemplateError {
    /// The template's line, when known.
    pub line: Option<usize>,
    /// What is wrong, for the admin who wrote it.
    pub message: String,
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env
}

/// Renders `template` with `context`.
pub fn render(template: &str, context: &PromptContext) -> Result<String, TemplateError> {
    let env = environment();
    let compiled = env
        .template_from_str(template)
        .map_err(|e| explain(&e, template))?;
    let rendered = compiled
        .render(Value::from(Serde(context)))
        .map_err(|e| explain(&e, template))?;
    let rendered = rendered.trim().to_owned();
    if rendered.chars().count() > MAX_PROMPT {
        return Err(TemplateError {
            line: None,
            message: format!("renders to more than {MAX_PROMPT} characters"),
        });
    }
    Ok(rendered)
}

/// Checks a template as an admin saves it: it must render, to something,
/// both for a person with a profile and an analysed meeting and for a new
/// person with neither.
pub fn check(template: &str, kind: ExerciseKind, rubric: &Rubric) -> Result<(), TemplateError> {
    for context in [sample(kind, rubric, true), sample(kind, rubric, false)] {
        if render(template, &context)?.is_empty() {
            return Err(TemplateError {
                line: None,
                message: if context.meeting.available {
                    "renders to nothing".into()
                } else {
                    "renders to nothing for a person without an analysed meeting".into()
                },
            });
        }
    }
    Ok(())
}

/// Names templates may use that are minijinja's, not the context's.
const GLOBALS: &[&str] = &["range", "dict", "namespace", "loop", "debug"];

/// Names the undefined variables an error was about, since minijinja's
/// strict mode reports only that something was undefined.
fn explain(error: &minijinja::Error, template: &str) -> TemplateError {
    let mut message = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    if error.kind() == ErrorKind::UndefinedError {
        let env = environment();
        let known = serde_json::to_value(sample(ExerciseKind::Speaking, &Rubric::default(), true))
            .unwrap_or_default();
        if let Ok(compiled) = env.template_from_str(template) {
            let mut unknown: Vec<String> = compiled
                .undeclared_variables(true)
                .into_iter()
                .filter(|path| !GLOBALS.contains(&path.split('.').next().unwrap_or_default()))
                .filter(|path| path.split('.').try_fold(&known, |v, key| v.get(key)).is_none())
                .collect();
            unknown.sort();
            if !unknown.is_empty() {
                message = format!(
                    "undefined variable `{}` (see docs/prompt-context.md for what a prompt may use)",
                    unknown.join("`, `")
                );
            }
        }
    }
    TemplateError {
        line: error.line(),
        message,
    }
}

/// A context for checking templates: a person with everything filled in
/// (`full`), or a new one with no profile details and no meeting.
pub fn sample(kind: ExerciseKind, rubric: &Rubric, full: bool) -> PromptContext {
    let exercise = ExerciseContext {
        id: "sample".into(),
        title: "Sample".into(),
        difficulty: 2,
        kind: serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    };
    if !full {
        return PromptContext {
            context_version: CONTEXT_VERSION,
            user: UserContext {
                display_name: "Sam".into(),
                first_name: "Sam".into(),
                ..UserContext::default()
            },
            signals: Signals::default(),
            meeting: MeetingContext::default(),
            targets: Targets::from(rubric),
            exercise,
        };
    }
    PromptContext {
        context_version: CONTEXT_VERSION,
        user: UserContext {
            display_name: "Ada Lovelace".into(),
            first_name: "Ada".into(),
            job_title: "Engineering manager".into(),
            meeting_role: "facilitator".into(),
            goals: vec!["speak more concisely".into()],
            meeting_types: vec!["standup".into(), "one_on_one".into()],
            experience_level: "intermediate".into(),
            locale: "en-GB".into(),
            focus_skills: vec!["filler_words".into()],
        },
        signals: Signals {
            available: true,
            words_per_minute: Some(182),
            pace_estimated: false,
            fillers_per_100_words: Some(6.4),
            filler_count: Some(58),
            top_fillers: vec!["um".into(), "like".into(), "you know".into()],
            pause_count: 41,
            longest_pause_seconds: 4.2,
            longest_monologue_seconds: 150,
            longest_monologue_words: Some(420),
            questions: Some(3),
            questions_per_10_minutes: Some(1.0),
            speech_percent: 71,
            duration_minutes: 30,
        },
        meeting: MeetingContext {
            available: true,
            title: "Quarterly planning".into(),
            date: "2026-11-30".into(),
            name: "meetings/0193a5b2-0000-7000-8000-000000000000".into(),
        },
        targets: Targets::from(rubric),
        exercise,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speaking() -> Rubric {
        Rubric {
            target_duration_ms: Some(60_000),
            ..Rubric::default()
        }
    }

    #[test]
    fn a_template_renders_the_persons_context() {
        let context = sample(ExerciseKind::Speaking, &speaking(), true);
        let prompt = render(
            "{{ user.first_name }}, open {{ meeting.title }} in {{ targets.target_seconds }} seconds \
             at under {{ signals.words_per_minute }} wpm.",
            &context,
        )
        .unwrap();
        assert_eq!(
            prompt,
            "Ada, open Quarterly planning in 60 seconds at under 182 wpm."
        );
    }

    #[test]
    fn an_undefined_variable_is_named_with_its_line() {
        let error = check(
            "Hello {{ user.first_name }}.\nTalk about {{ meting.title }}.",
            ExerciseKind::Speaking,
            &speaking(),
        )
        .unwrap_err();
        assert_eq!(error.line, Some(2), "{error}");
        assert!(error.message.contains("`meting.title`"), "{error}");
    }

    #[test]
    fn a_template_must_also_work_for_a_person_without_a_meeting() {
        // Reading a meeting's title when there is none renders nothing.
        let error = check("{{ meeting.title }}", ExerciseKind::Speaking, &speaking()).unwrap_err();
        assert!(error.message.contains("without an analysed meeting"), "{error}");
        check(
            "{% if meeting.available %}Open {{ meeting.title }}.{% else %}Open your next meeting.{% endif %}",
            ExerciseKind::Speaking,
            &speaking(),
        )
        .unwrap();
    }

    #[test]
    fn includes_endless_loops_and_huge_output_are_refused() {
        let context = sample(ExerciseKind::Speaking, &speaking(), true);
        // Built without multi-template support, `include` is not a statement.
        let include = render("{% include 'prompt.txt' %}", &context).unwrap_err();
        assert!(include.message.contains("unknown statement include"), "{include}");
        let fuel = render("{% for i in range(100000) %}{{ i }}{% endfor %}", &context).unwrap_err();
        assert!(fuel.message.contains("fuel"), "{fuel}");
        let long = render("{{ 'x' * 5000 }}", &context).unwrap_err();
        assert!(long.message.contains("more than"), "{long}");
        let syntax = render("Hello {{ user.first_name ", &context).unwrap_err();
        assert_eq!(syntax.line, Some(1));
    }
}
