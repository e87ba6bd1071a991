//! Pipeline rows to API messages. Each conversion destructures its row, so
//! a new column does not build until it is shown or explicitly left out.

use super::entity::{JobState, RunState, job, stage_run};
use crate::pb::v1 as pb;
use crate::timestamps::{opt_to_proto, to_proto};

impl From<job::Model> for pb::Job {
    fn from(job: job::Model) -> Self {
        let job::Model {
            id,
            user_id,
            meeting_id,
            kind,
            state,
            attempts,
            max_attempts,
            run_at,
            last_error,
            created_at,
            updated_at,
            // Who holds it and what it holds are the workers' business.
            lease_until: _,
            worker: _,
            reservation_id: _,
            subject_id,
        } = job;
        Self {
            name: format!("jobs/{id}"),
            kind,
            meeting: meeting_id.map(|id| format!("meetings/{id}")).unwrap_or_default(),
            subject: subject_id.map(|id| id.to_string()).unwrap_or_default(),
            user: format!("users/{user_id}"),
            state: match state {
                // Waiting for its retry after a failure.
                JobState::Pending if attempts > 0 => pb::JobState::Failed,
                JobState::Pending => pb::JobState::Pending,
                JobState::Running => pb::JobState::Running,
                JobState::Succeeded => pb::JobState::Succeeded,
                JobState::Dead => pb::JobState::Dead,
            }
            .into(),
            attempts,
            max_attempts,
            last_error: last_error.unwrap_or_default(),
            run_time: Some(to_proto(run_at)),
            create_time: Some(to_proto(created_at)),
            update_time: Some(to_proto(updated_at)),
        }
    }
}

impl From<RunState> for pb::StageRunState {
    fn from(state: RunState) -> Self {
        match state {
            RunState::Running => Self::Running,
            RunState::Succeeded => Self::Succeeded,
            RunState::Failed => Self::Failed,
            RunState::Skipped => Self::Skipped,
        }
    }
}

impl From<&stage_run::Model> for pb::StageRun {
    fn from(run: &stage_run::Model) -> Self {
        let stage_run::Model {
            stage,
            attempt,
            state,
            started_at,
            finished_at,
            error,
            // The meeting and owner are the status's; the rest bookkeeping.
            id: _,
            meeting_id: _,
            user_id: _,
            created_at: _,
            updated_at: _,
        } = run;
        Self {
            stage: pb::ProcessingStage::from(*stage).into(),
            attempt: *attempt,
            state: pb::StageRunState::from(*state).into(),
            start_time: Some(to_proto(*started_at)),
            end_time: opt_to_proto(*finished_at),
            error: error.clone().unwrap_or_default(),
        }
    }
}
