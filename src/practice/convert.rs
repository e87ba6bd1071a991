//! Practice rows to API messages. Each conversion destructures its row, so
//! a new column does not build until it is shown or explicitly left out.

use super::catalog::{self, Loaded};
use super::entity::{ModuleState, module};
use crate::error::AppResult;
use crate::pb::v1 as pb;
use crate::skills::Skill;
use crate::timestamps::{opt_to_proto, to_proto};

impl From<ModuleState> for pb::ModuleState {
    fn from(state: ModuleState) -> Self {
        match state {
            ModuleState::Draft => Self::Draft,
            ModuleState::Published => Self::Published,
            ModuleState::Archived => Self::Archived,
        }
    }
}

fn skills(json: &serde_json::Value) -> AppResult<Vec<i32>> {
    Ok(catalog::skills_of(json)?
        .into_iter()
        .map(|s: Skill| pb::Skill::from(s) as i32)
        .collect())
}

/// A module as lists show it (the listed version, no exercises); the draft
/// flag for admins only.
pub fn listed(head: &module::Model, admin: bool) -> AppResult<pb::Module> {
    let module::Model {
        id,
        state,
        version,
        draft_version,
        title,
        description,
        skills: skill_names,
        difficulty,
        estimated_duration_ms,
        published_at,
        created_at,
        updated_at,
        // Who made it is for the audit log.
        created_by: _,
    } = head;
    Ok(pb::Module {
        name: format!("modules/{id}"),
        title: title.clone(),
        description: description.clone(),
        skills: skills(skill_names)?,
        difficulty: *difficulty,
        state: pb::ModuleState::from(*state) as i32,
        version: *version,
        has_draft: admin && draft_version.is_some(),
        exercises: Vec::new(),
        estimated_duration: catalog::estimated(*estimated_duration_ms),
        create_time: Some(to_proto(*created_at)),
        update_time: Some(to_proto(*updated_at)),
        publish_time: opt_to_proto(*published_at),
    })
}

/// A version of a module with its exercises: templates for admins, and
/// each exercise's prompt as rendered for the caller (`prompts`, in order).
pub fn version(loaded: &Loaded, admin: bool, prompts: Vec<String>) -> AppResult<pb::Module> {
    let Loaded {
        head,
        version,
        exercises,
    } = loaded;
    let fields = loaded.fields()?;
    let mut module = listed(head, admin)?;
    module.title = fields.title;
    module.description = fields.description;
    module.skills = fields.skills.iter().map(|s| pb::Skill::from(*s) as i32).collect();
    module.difficulty = fields.difficulty;
    module.estimated_duration = catalog::estimated(fields.estimated_duration_ms);
    if loaded.is_published() {
        module.version = version.version;
    }
    module.publish_time = opt_to_proto(version.published_at);
    module.exercises = fields
        .exercises
        .iter()
        .zip(prompts.into_iter().chain(std::iter::repeat(String::new())))
        .map(|(exercise, prompt)| {
            let mut message = exercise.to_proto();
            if !admin {
                message.prompt_template.clear();
            }
            message.prompt = prompt;
            message
        })
        .collect();
    debug_assert_eq!(module.exercises.len(), exercises.len());
    Ok(module)
}
