//! Practice rows to API messages. Each conversion destructures its row, so
//! a new column does not build until it is shown or explicitly left out.

use super::catalog::{self, Loaded};
use super::entity::{AttemptState, ModuleState, SessionState, attempt, module, session};
use super::scoring::{Feedback, Metrics};
use crate::error::{AppError, AppResult};
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

impl From<SessionState> for pb::SessionState {
    fn from(state: SessionState) -> Self {
        match state {
            SessionState::Active => Self::Active,
            SessionState::Completed => Self::Completed,
            SessionState::Abandoned => Self::Abandoned,
        }
    }
}

impl From<AttemptState> for pb::AttemptState {
    fn from(state: AttemptState) -> Self {
        match state {
            AttemptState::AwaitingRecording => Self::AwaitingRecording,
            AttemptState::Processing => Self::Processing,
            AttemptState::Scored => Self::Scored,
            AttemptState::Failed => Self::Failed,
        }
    }
}

/// A session with its exercises and `attempts` (oldest first; none in
/// lists).
pub fn session(row: &session::Model, attempts: &[attempt::Model]) -> AppResult<pb::PracticeSession> {
    let session::Model {
        id,
        module_id,
        module_version,
        state,
        difficulty,
        score,
        started_at,
        completed_at,
        // The exercises are read below; the rest is bookkeeping (the
        // per-skill scores go to progress).
        exercises: _,
        user_id: _,
        meeting_id: _,
        skill_scores: _,
        reservation_id: _,
        request_id: _,
        created_at: _,
        updated_at: _,
    } = row;
    Ok(pb::PracticeSession {
        name: format!("practiceSessions/{id}"),
        module: format!("modules/{module_id}"),
        module_version: *module_version,
        state: pb::SessionState::from(*state) as i32,
        difficulty: *difficulty,
        exercises: super::sessions::exercises(row)?
            .iter()
            .map(pb::Exercise::from)
            .collect(),
        attempts: attempts.iter().map(attempt).collect::<AppResult<_>>()?,
        score: score.unwrap_or(0.0),
        start_time: Some(to_proto(*started_at)),
        complete_time: if *state == SessionState::Completed {
            opt_to_proto(*completed_at)
        } else {
            None
        },
    })
}

/// An attempt.
pub fn attempt(row: &attempt::Model) -> AppResult<pb::Attempt> {
    let attempt::Model {
        id,
        session_id,
        exercise_id,
        state,
        response_text,
        duration_ms,
        score,
        feedback,
        metrics,
        recording_meeting_id,
        upload_id,
        failure_reason,
        created_at,
        // The owner is the caller; the rest is bookkeeping.
        user_id: _,
        ai_requested: _,
        request_id: _,
        updated_at: _,
    } = row;
    let feedback = feedback
        .as_ref()
        .map(|f| serde_json::from_value::<Feedback>(f.clone()).map_err(AppError::internal))
        .transpose()?;
    let metrics = metrics
        .as_ref()
        .map(|m| serde_json::from_value::<Metrics>(m.clone()).map_err(AppError::internal))
        .transpose()?;
    Ok(pb::Attempt {
        name: format!("practiceSessions/{session_id}/attempts/{id}"),
        exercise_id: exercise_id.clone(),
        response_text: response_text.clone(),
        duration: duration_ms.map(crate::timestamps::ms_to_duration),
        score: score.unwrap_or(0.0),
        feedback: feedback.as_ref().map(pb::Feedback::from),
        create_time: Some(to_proto(*created_at)),
        state: pb::AttemptState::from(*state) as i32,
        upload: upload_id.map(|id| format!("uploads/{id}")).unwrap_or_default(),
        recording: recording_meeting_id
            .map(|id| format!("meetings/{id}"))
            .unwrap_or_default(),
        metrics: metrics.as_ref().map(pb::AttemptMetrics::from),
        failure_reason: failure_reason.clone().unwrap_or_default(),
    })
}
