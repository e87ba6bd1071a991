//! The modules debrief ships with: one per skill, kept as data files in
//! `src/practice/seed/` and built into the binary. At start-up each one
//! that does not exist yet is created and published as version 1; one that
//! exists is left alone, so an admin's later edits are never overwritten.

use serde::Deserialize;

use super::catalog;
use super::entity::ExerciseKind;
use super::model::ModuleFields;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::timestamps;

/// The seed files, by name.
const FILES: &[(&str, &str)] = &[
    ("pacing.json", include_str!("seed/pacing.json")),
    ("filler_words.json", include_str!("seed/filler_words.json")),
    ("pauses.json", include_str!("seed/pauses.json")),
    ("conciseness.json", include_str!("seed/conciseness.json")),
    ("questioning.json", include_str!("seed/questioning.json")),
    ("clarity.json", include_str!("seed/clarity.json")),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedModule {
    id: String,
    title: String,
    description: String,
    skills: Vec<Skill>,
    difficulty: i32,
    estimated_minutes: i64,
    exercises: Vec<SeedExercise>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedExercise {
    id: String,
    title: String,
    kind: ExerciseKind,
    difficulty: i32,
    prompt: String,
    rubric: SeedRubric,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SeedRubric {
    min_words: i32,
    max_words: i32,
    min_wpm: f64,
    max_wpm: f64,
    target_seconds: i64,
    required_phrases: Vec<String>,
    avoid_words: Vec<String>,
    expect_question: bool,
}

impl SeedModule {
    /// The module as an API message, to be checked like an admin's.
    fn to_proto(&self) -> pb::Module {
        pb::Module {
            title: self.title.clone(),
            description: self.description.clone(),
            skills: self.skills.iter().map(|s| pb::Skill::from(*s) as i32).collect(),
            difficulty: self.difficulty,
            estimated_duration: Some(timestamps::ms_to_duration(self.estimated_minutes * 60_000)),
            exercises: self
                .exercises
                .iter()
                .map(|e| pb::Exercise {
                    id: e.id.clone(),
                    title: e.title.clone(),
                    kind: pb::ExerciseKind::from(e.kind) as i32,
                    prompt_template: e.prompt.clone(),
                    difficulty: e.difficulty,
                    rubric: Some(pb::Rubric {
                        min_words: e.rubric.min_words,
                        max_words: e.rubric.max_words,
                        min_words_per_minute: e.rubric.min_wpm,
                        max_words_per_minute: e.rubric.max_wpm,
                        required_phrases: e.rubric.required_phrases.clone(),
                        avoid_words: e.rubric.avoid_words.clone(),
                        expect_question: e.rubric.expect_question,
                        target_duration: (e.rubric.target_seconds > 0)
                            .then(|| timestamps::ms_to_duration(e.rubric.target_seconds * 1000)),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }
}

/// Every seed module, checked by the same rules as an admin's.
pub fn modules() -> AppResult<Vec<(String, ModuleFields)>> {
    FILES
        .iter()
        .map(|(file, json)| {
            let seed: SeedModule = serde_json::from_str(json)
                .map_err(|e| AppError::internal(format!("seed module {file}: {e}")))?;
            let fields = ModuleFields::parse(&seed.to_proto(), "module")
                .map_err(|e| AppError::internal(format!("seed module {file}: {e}")))?;
            Ok((seed.id, fields))
        })
        .collect()
}

/// Creates and publishes the seed modules that do not exist yet; returns
/// how many it added.
pub async fn load(db: &Db) -> AppResult<usize> {
    let modules = modules()?;
    let scoped = db.as_service().await?;
    let mut added = 0;
    for (id, fields) in &modules {
        if catalog::create(scoped.txn(), id, fields, None).await? {
            catalog::publish(scoped.txn(), id, |_| Ok(())).await?;
            added += 1;
        }
    }
    scoped.commit().await?;
    if added > 0 {
        tracing::info!(added, "seed practice modules added");
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_module_passes_the_admins_rules_and_each_skill_has_one() {
        let modules = modules().unwrap();
        assert!(modules.len() >= 6);
        for skill in [
            Skill::Pacing,
            Skill::FillerWords,
            Skill::Pauses,
            Skill::Conciseness,
            Skill::Questioning,
            Skill::Clarity,
        ] {
            let (id, fields) = modules
                .iter()
                .find(|(_, f)| f.skills.first() == Some(&skill))
                .unwrap_or_else(|| panic!("no seed module trains {skill:?} first"));
            assert!(fields.exercises.len() >= 3, "{id}");
            let difficulties: Vec<i32> = fields.exercises.iter().map(|e| e.difficulty).collect();
            assert!(
                difficulties.windows(2).all(|w| w[0] < w[1]),
                "{id}: {difficulties:?}"
            );
        }
    }
}
