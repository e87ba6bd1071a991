//! A module's fields and their rules, the rubric, and what a session keeps
//! of each exercise.
//!
//! [`ModuleFields::parse`] is the only way from an API message to stored
//! values: every field is checked, templates are compiled and rendered
//! against sample contexts, and every violation is reported by its path.

use serde::{Deserialize, Serialize};

use super::entity::ExerciseKind;
use super::rubric::Rubric;
use super::templates;
use crate::error::{AppResult, Violations};
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::timestamps;

/// Longest title of a module or an exercise.
const MAX_TITLE: usize = 120;
/// Longest description.
const MAX_DESCRIPTION: usize = 2000;
/// Most exercises in a module.
const MAX_EXERCISES: usize = 30;
/// Longest estimated length of a module.
const MAX_DURATION_MS: i64 = 4 * 3600 * 1000;

/// One exercise as saved.
#[derive(Debug, Clone, PartialEq)]
pub struct ExerciseFields {
    /// Id within the module.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it asks for.
    pub kind: ExerciseKind,
    /// The prompt's template.
    pub prompt_template: String,
    /// Difficulty 1–5.
    pub difficulty: i32,
    /// Scoring rules.
    pub rubric: Rubric,
}

/// A module's versioned fields, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ModuleFields {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Skills, the main one first.
    pub skills: Vec<Skill>,
    /// Difficulty 1–5.
    pub difficulty: i32,
    /// Roughly how long it takes.
    pub estimated_duration_ms: i64,
    /// The exercises, in order.
    pub exercises: Vec<ExerciseFields>,
}

/// Whether `id` is a module or exercise slug: lower-case letters, digits
/// and dashes, starting with a letter, 3 to 64 characters.
pub fn is_slug(id: &str) -> bool {
    (3..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

impl ModuleFields {
    /// Validates `module` (its identity and output fields are ignored),
    /// reporting every violation under `prefix` (e.g. `module`).
    pub fn parse(module: &pb::Module, prefix: &str) -> AppResult<Self> {
        let mut bad = Violations::default();
        let path = |field: &str| format!("{prefix}.{field}");
        let title = bad.check(required_text(&path("title"), &module.title, MAX_TITLE))?;
        let description = bad.check(crate::text::plain_text(
            &path("description"),
            &module.description,
            MAX_DESCRIPTION,
        ))?;
        let skills = parse_skills(&mut bad, &path("skills"), &module.skills);
        check_difficulty(&mut bad, &path("difficulty"), module.difficulty);
        let estimated = match &module.estimated_duration {
            Some(d) => bad.check(timestamps::duration_to_ms(&path("estimated_duration"), d))?,
            None => Some(0),
        };
        if estimated.is_some_and(|ms| ms > MAX_DURATION_MS) {
            bad.add(path("estimated_duration"), "must be at most 4 hours");
        }
        if module.exercises.len() > MAX_EXERCISES {
            bad.add(
                path("exercises"),
                format!("must hold at most {MAX_EXERCISES} exercises"),
            );
        }
        let mut exercises = Vec::with_capacity(module.exercises.len());
        for (i, exercise) in module.exercises.iter().enumerate() {
            let at = path(&format!("exercises[{i}]"));
            if module.exercises[..i].iter().any(|e| e.id == exercise.id) {
                bad.add(
                    format!("{at}.id"),
                    format!("`{}` is used by an earlier exercise", exercise.id),
                );
            }
            if let Some(parsed) = bad.check(parse_exercise(exercise, &at))? {
                exercises.push(parsed);
            }
        }
        bad.finish(|| {
            Some(Self {
                title: title?,
                description: description?,
                skills,
                difficulty: module.difficulty,
                estimated_duration_ms: estimated?,
                exercises,
            })
        })
    }

    /// The fields as an API message (for merging an update into them).
    pub fn to_proto(&self) -> pb::Module {
        pb::Module {
            title: self.title.clone(),
            description: self.description.clone(),
            skills: self.skills.iter().map(|s| pb::Skill::from(*s) as i32).collect(),
            difficulty: self.difficulty,
            estimated_duration: Some(timestamps::ms_to_duration(self.estimated_duration_ms)),
            exercises: self.exercises.iter().map(ExerciseFields::to_proto).collect(),
            ..Default::default()
        }
    }
}

impl ExerciseFields {
    /// The exercise as an API message, with its template and no prompt.
    pub fn to_proto(&self) -> pb::Exercise {
        pb::Exercise {
            id: self.id.clone(),
            title: self.title.clone(),
            kind: pb::ExerciseKind::from(self.kind) as i32,
            prompt_template: self.prompt_template.clone(),
            prompt: String::new(),
            difficulty: self.difficulty,
            rubric: Some(self.rubric.to_proto()),
            state: pb::ExerciseState::Unspecified as i32,
        }
    }
}

/// The module fields `UpdateModule` may change.
pub const UPDATABLE: &[&str] = &[
    "title",
    "description",
    "skills",
    "difficulty",
    "estimated_duration",
    "exercises",
];

/// Refuses mask paths that name no updatable field.
pub fn check_mask(paths: &[String]) -> AppResult<()> {
    crate::update_mask::check(paths, UPDATABLE)
}

/// Copies the fields of `update` named by `paths` (checked with
/// [`check_mask`]) into `current`; without paths, those set to a
/// non-default value.
pub fn merge(current: &mut pb::Module, update: pb::Module, paths: &[String]) {
    let set = [
        !update.title.is_empty(),
        !update.description.is_empty(),
        !update.skills.is_empty(),
        update.difficulty != 0,
        update.estimated_duration.is_some(),
        !update.exercises.is_empty(),
    ];
    for path in crate::update_mask::chosen(paths, UPDATABLE, &set) {
        match path {
            "title" => current.title.clone_from(&update.title),
            "description" => current.description.clone_from(&update.description),
            "skills" => current.skills.clone_from(&update.skills),
            "difficulty" => current.difficulty = update.difficulty,
            "estimated_duration" => current.estimated_duration = update.estimated_duration,
            "exercises" => current.exercises.clone_from(&update.exercises),
            _ => {}
        }
    }
}

fn required_text(field: &str, raw: &str, max: usize) -> AppResult<String> {
    let text = crate::text::plain_text(field, raw, max)?;
    if text.is_empty() {
        return Err(crate::error::AppError::invalid(field, "is required"));
    }
    Ok(text)
}

fn check_difficulty(bad: &mut Violations, field: &str, difficulty: i32) {
    if !(1..=5).contains(&difficulty) {
        bad.add(field, "must be from 1 (easiest) to 5");
    }
}

fn parse_skills(bad: &mut Violations, field: &str, raw: &[i32]) -> Vec<Skill> {
    if raw.is_empty() {
        bad.add(field, "must name at least one skill");
    }
    let mut skills = Vec::with_capacity(raw.len());
    for (i, value) in raw.iter().enumerate() {
        match pb::Skill::try_from(*value).ok().and_then(Skill::from_proto) {
            Some(skill) if skills.contains(&skill) => {
                bad.add(format!("{field}[{i}]"), "is listed twice");
            }
            Some(skill) => skills.push(skill),
            None => bad.add(format!("{field}[{i}]"), "must be a skill"),
        }
    }
    skills
}

fn parse_exercise(exercise: &pb::Exercise, at: &str) -> AppResult<ExerciseFields> {
    let mut bad = Violations::default();
    let path = |field: &str| format!("{at}.{field}");
    if !is_slug(&exercise.id) {
        bad.add(
            path("id"),
            "must be 3 to 64 lower-case letters, digits and dashes, starting with a letter",
        );
    }
    let title = bad.check(required_text(&path("title"), &exercise.title, MAX_TITLE))?;
    let kind = pb::ExerciseKind::try_from(exercise.kind)
        .ok()
        .and_then(ExerciseKind::from_proto);
    if kind.is_none() {
        bad.add(path("kind"), "must be SPEAKING, REWRITE, REFLECTION or SCENARIO");
    }
    check_difficulty(&mut bad, &path("difficulty"), exercise.difficulty);
    let rubric = bad.check(Rubric::parse(
        exercise.rubric.as_ref().unwrap_or(&pb::Rubric::default()),
        &path("rubric"),
    ))?;
    if exercise.prompt_template.trim().is_empty() {
        bad.add(path("prompt_template"), "is required");
    } else if let (Some(kind), Some(rubric)) = (kind, &rubric)
        && let Err(error) = templates::check(&exercise.prompt_template, kind, rubric)
    {
        bad.add(path("prompt_template"), error.to_string());
    }
    bad.finish(|| {
        Some(ExerciseFields {
            id: exercise.id.clone(),
            title: title?,
            kind: kind?,
            prompt_template: exercise.prompt_template.clone(),
            difficulty: exercise.difficulty,
            rubric: rubric?,
        })
    })
}

impl ExerciseKind {
    /// The kind of an API enum; None for UNSPECIFIED.
    pub fn from_proto(kind: pb::ExerciseKind) -> Option<Self> {
        match kind {
            pb::ExerciseKind::Unspecified => None,
            pb::ExerciseKind::Speaking => Some(Self::Speaking),
            pb::ExerciseKind::Rewrite => Some(Self::Rewrite),
            pb::ExerciseKind::Reflection => Some(Self::Reflection),
            pb::ExerciseKind::Scenario => Some(Self::Scenario),
        }
    }
}

impl From<ExerciseKind> for pb::ExerciseKind {
    fn from(kind: ExerciseKind) -> Self {
        match kind {
            ExerciseKind::Speaking => Self::Speaking,
            ExerciseKind::Rewrite => Self::Rewrite,
            ExerciseKind::Reflection => Self::Reflection,
            ExerciseKind::Scenario => Self::Scenario,
        }
    }
}

/// Whether an exercise of a session can be attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExerciseState {
    /// Its prompt is ready.
    Ready,
    /// A scenario is being generated.
    Generating,
    /// Generation failed for good.
    Failed,
}

impl From<ExerciseState> for pb::ExerciseState {
    fn from(state: ExerciseState) -> Self {
        match state {
            ExerciseState::Ready => Self::Ready,
            ExerciseState::Generating => Self::Generating,
            ExerciseState::Failed => Self::Failed,
        }
    }
}

/// An exercise as a session keeps it: rendered for the person when the
/// session started, so later edits of the module or the profile do not
/// change a session under way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionExercise {
    /// Id within the module.
    pub id: String,
    /// Title.
    pub title: String,
    /// What it asks for.
    pub kind: ExerciseKind,
    /// The prompt as rendered (for a scenario, as generated once ready).
    pub prompt: String,
    /// Difficulty 1–5.
    pub difficulty: i32,
    /// Scoring rules.
    pub rubric: Rubric,
    /// Whether it can be attempted.
    pub state: ExerciseState,
}

impl From<&SessionExercise> for pb::Exercise {
    fn from(exercise: &SessionExercise) -> Self {
        let SessionExercise {
            id,
            title,
            kind,
            prompt,
            difficulty,
            rubric,
            state,
        } = exercise;
        Self {
            id: id.clone(),
            title: title.clone(),
            kind: pb::ExerciseKind::from(*kind) as i32,
            // Templates are for admins; a session shows what was rendered.
            prompt_template: String::new(),
            prompt: prompt.clone(),
            difficulty: *difficulty,
            rubric: Some(rubric.to_proto()),
            state: pb::ExerciseState::from(*state) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(id: &str, template: &str) -> pb::Exercise {
        pb::Exercise {
            id: id.into(),
            title: "Open the meeting".into(),
            kind: pb::ExerciseKind::Speaking as i32,
            prompt_template: template.into(),
            difficulty: 2,
            rubric: Some(pb::Rubric {
                min_words_per_minute: 130.0,
                max_words_per_minute: 160.0,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fields_of(violations: crate::error::AppError) -> Vec<String> {
        match violations {
            crate::error::AppError::InvalidArgument(v) => v.into_iter().map(|v| v.field).collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_bad_field_is_named_by_its_path() {
        let module = pb::Module {
            title: " ".into(),
            skills: vec![],
            difficulty: 7,
            exercises: vec![
                exercise("open-well", "Open {{ meeting.title }}."),
                exercise("open-well", "Hello {{ meting.title }}"),
                pb::Exercise {
                    rubric: Some(pb::Rubric {
                        min_words: 50,
                        max_words: 10,
                        min_words_per_minute: 400.0,
                        ..Default::default()
                    }),
                    ..exercise("Bad Id", "Fine.")
                },
            ],
            ..Default::default()
        };
        let fields = fields_of(ModuleFields::parse(&module, "module").unwrap_err());
        for expected in [
            "module.title",
            "module.skills",
            "module.difficulty",
            "module.exercises[1].id",
            "module.exercises[1].prompt_template",
            "module.exercises[2].id",
            "module.exercises[2].rubric.min_words",
            "module.exercises[2].rubric.min_words_per_minute",
        ] {
            assert!(
                fields.iter().any(|f| f == expected),
                "{expected} missing from {fields:?}"
            );
        }
    }

    #[test]
    fn a_valid_module_round_trips_through_the_api_message() {
        let module = pb::Module {
            title: "Pace".into(),
            skills: vec![pb::Skill::Pacing as i32],
            difficulty: 2,
            exercises: vec![exercise("open-well", "Open {{ meeting.title }}.")],
            ..Default::default()
        };
        let fields = ModuleFields::parse(&module, "module").unwrap();
        assert_eq!(ModuleFields::parse(&fields.to_proto(), "module").unwrap(), fields);
    }
}
