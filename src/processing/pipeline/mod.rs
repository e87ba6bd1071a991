//! The stages of processing one meeting, run by a worker holding its job.
//!
//! Each stage is recorded in `processing_stage_runs` and announced as
//! events, and writes its results in the same transaction that marks it
//! succeeded, fenced by the job's lease. A run resumes at the first stage
//! whose latest run did not succeed, so a crash repeats at most the stage
//! it interrupted; every stage replaces its own results rather than adding
//! to them, so repeating one leaves no duplicates.
//!
//! This module holds the run and its stage loop; `stages.rs` the work of
//! each stage, `progress.rs` how a run reports itself. Queries on the
//! pipeline's tables are in [`super::store`], on the meeting in
//! `meetings::store` and `meetings::results`.

mod progress;
mod stages;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

pub use progress::{STAGES, StageEvent, announce, percent_at};

use super::entity::{RunState, Stage, job};
use super::transcribe::{TranscribeError, Transcriber};
use super::{jobs, release_reservation, settle_reservation, store};
use crate::config::Config;
use crate::db::{Db, Scoped};
use crate::error::{AppError, AppResult};
use crate::events::model::{Payload, StagePhase};
use crate::meetings::entity::{self as meeting, Status};
use crate::meetings::store as meetings;
use crate::storage::Storage;

/// What the pipeline needs.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// Settings.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// Object storage.
    pub storage: Storage,
    /// The transcription provider.
    pub transcriber: Arc<dyn Transcriber>,
    /// Other domains' tasks, and who hears of processed meetings.
    pub tasks: super::tasks::Tasks,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Transcript and analysis are ready.
    Ready,
    /// All but transcription is done; transcription is turned off.
    Parked,
    /// The meeting was deleted meanwhile (the job ends all the same).
    Gone,
    /// Another domain's task is done.
    Done,
}

/// A failed stage.
#[derive(Debug)]
pub struct Failure {
    /// The stage, when one had started.
    pub run: Option<(Stage, i32)>,
    /// Why, in words fit for the owner.
    pub message: String,
    /// Whether trying again cannot help.
    pub permanent: bool,
}

impl Failure {
    /// A failure that trying again cannot mend.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            run: None,
            message: message.into(),
            permanent: true,
        }
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        let lost = matches!(error, AppError::Aborted { reason, .. } if reason == jobs::LEASE_LOST);
        if !lost {
            tracing::warn!(%error, "a processing stage failed");
        }
        Self {
            run: None,
            message: if lost {
                "another worker took over".into()
            } else {
                "an internal error interrupted processing".into()
            },
            permanent: false,
        }
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(error: sea_orm::DbErr) -> Self {
        AppError::from(error).into()
    }
}

impl From<TranscribeError> for Failure {
    fn from(error: TranscribeError) -> Self {
        let permanent = matches!(error, TranscribeError::Permanent(_));
        Self {
            run: None,
            message: error.to_string(),
            permanent,
        }
    }
}

/// One run of the pipeline for one job.
struct Run<'a> {
    pipeline: &'a Pipeline,
    job: &'a job::Model,
    worker: &'a str,
    meeting: meeting::Model,
    original: PathBuf,
    wav: PathBuf,
}

/// Storage prefix of a meeting's temporary objects.
pub fn work_prefix(meeting_id: Uuid) -> String {
    format!("meetings/{meeting_id}/work/")
}

fn audio_key(meeting_id: Uuid) -> String {
    format!("{}audio.wav", work_prefix(meeting_id))
}

impl Pipeline {
    /// Runs the job's remaining stages; on success the job has ended.
    pub async fn run(&self, job: &job::Model, worker: &str) -> Result<Outcome, Failure> {
        let meeting_id = job
            .meeting_id
            .ok_or_else(|| Failure::permanent("a meeting's job names no meeting"))?;
        let scoped = self.db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        let meeting = match meetings::get(&scoped, meeting_id).await {
            Ok(meeting) => meeting,
            Err(AppError::NotFound { .. }) => {
                release_reservation(&scoped, job).await?;
                jobs::succeed(&scoped, job.id, worker).await?;
                scoped.commit().await?;
                return Ok(Outcome::Gone);
            }
            Err(e) => return Err(e.into()),
        };
        store::fail_interrupted_runs(&scoped, meeting.id).await?;
        if meeting.status == Status::Queued {
            meetings::transition(&scoped, meeting.id, &[Status::Queued], Status::Processing).await?;
            self.tasks
                .processed(&scoped, &meeting, Status::Processing)
                .await?;
        }
        let runs = store::runs(&scoped, meeting.id).await?;
        scoped.commit().await?;

        let done = |stage: Stage| {
            runs.iter()
                .rfind(|r| r.stage == stage)
                .is_some_and(|r| r.state == RunState::Succeeded)
        };
        let first = STAGES.iter().position(|s| !done(*s)).unwrap_or(STAGES.len());
        // Local copies live in a directory of this run alone, locked while
        // it runs (removed when it ends; a killed worker's is swept by
        // housekeeping), so a run never trusts a file another one left
        // half-written.
        let tmp = crate::scratch::dir(&self.config.data_dir)
            .await
            .map_err(AppError::internal)?;
        let work = crate::scratch::ScratchDir::create(&tmp, &format!("work-{}-", meeting.id))
            .map_err(AppError::internal)?;
        let run = Run {
            pipeline: self,
            job,
            worker,
            original: work.path().join("original"),
            wav: work.path().join("audio.wav"),
            meeting,
        };
        run.stages(&STAGES[first..]).await
    }
}

impl Run<'_> {
    async fn stages(&self, stages: &[Stage]) -> Result<Outcome, Failure> {
        let mut parked = false;
        for &stage in stages {
            let attempt = self.begin(stage).await?;
            let state = self.stage(stage, attempt, parked).await.map_err(|mut failure| {
                failure.run = Some((stage, attempt));
                failure
            })?;
            if stage == Stage::Transcribe && state == RunState::Skipped {
                parked = true;
            }
        }
        self.finish(parked).await
    }

    async fn stage(&self, stage: Stage, attempt: i32, parked: bool) -> Result<RunState, Failure> {
        match stage {
            Stage::Validate => self.validate(attempt).await,
            Stage::Convert => self.convert(attempt).await,
            Stage::Segment => self.segment(attempt).await,
            Stage::Sample => self.sample(attempt).await,
            Stage::Transcribe => self.transcribe(attempt).await,
            Stage::Analyze => self.analyze(attempt).await,
            Stage::Cleanup => self.cleanup(attempt, parked).await,
        }
    }

    /// Records the start of a stage: its run, the meeting's current stage,
    /// and an event. Returns the attempt number.
    async fn begin(&self, stage: Stage) -> Result<i32, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        jobs::fence(&scoped, self.job.id, self.worker).await?;
        let attempt = store::start_run(&scoped, &self.meeting, stage, Utc::now()).await?;
        meetings::set_stage(&scoped, self.meeting.id, stage).await?;
        announce(
            &scoped,
            &self.meeting,
            StageEvent::new(stage, attempt, StagePhase::Started),
        )
        .await?;
        scoped.commit().await?;
        Ok(attempt)
    }

    /// Marks the stage's run ended with `state`, in the transaction that
    /// writes its results, and announces it.
    async fn end(&self, scoped: &Scoped, stage: Stage, attempt: i32, state: RunState) -> AppResult<()> {
        jobs::fence(scoped, self.job.id, self.worker).await?;
        store::end_run(scoped, self.meeting.id, stage, attempt, state, None).await?;
        let phase = if state == RunState::Skipped {
            StagePhase::Skipped
        } else {
            StagePhase::Completed
        };
        announce(scoped, &self.meeting, StageEvent::new(stage, attempt, phase)).await
    }

    /// Ends the stage as succeeded in `scoped`, the transaction holding
    /// its results, and commits them together.
    async fn succeed(&self, scoped: Scoped, stage: Stage, attempt: i32) -> Result<RunState, Failure> {
        self.end(&scoped, stage, attempt, RunState::Succeeded).await?;
        scoped.commit().await?;
        Ok(RunState::Succeeded)
    }

    /// A stage that only writes its run.
    async fn end_alone(&self, stage: Stage, attempt: i32, state: RunState) -> Result<RunState, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        self.end(&scoped, stage, attempt, state).await?;
        scoped.commit().await?;
        Ok(state)
    }

    /// The original, downloaded once per run.
    async fn original(&self) -> Result<&PathBuf, Failure> {
        if tokio::fs::metadata(&self.original).await.is_err() {
            let key = self
                .meeting
                .original_object
                .as_deref()
                .ok_or_else(|| Failure::permanent("the meeting has no stored recording"))?;
            self.pipeline.storage.get_to_file(key, &self.original).await?;
        }
        Ok(&self.original)
    }

    /// The converted audio, downloaded once per run.
    async fn converted(&self) -> Result<&PathBuf, Failure> {
        if tokio::fs::metadata(&self.wav).await.is_err() {
            self.pipeline
                .storage
                .get_to_file(&audio_key(self.meeting.id), &self.wav)
                .await?;
        }
        Ok(&self.wav)
    }

    /// The meeting is ready (or parked): settle its analysis minutes and
    /// end the job, in one transaction.
    async fn finish(&self, parked: bool) -> Result<Outcome, Failure> {
        let scoped = self.pipeline.db.as_service().await?;
        let now = Utc::now();
        let to = if parked {
            Status::AwaitingTranscription
        } else {
            Status::Ready
        };
        if !meetings::transition(&scoped, self.meeting.id, &[Status::Processing], to).await? {
            // Deleted while it was processed: nothing to announce.
            release_reservation(&scoped, self.job).await?;
            jobs::succeed(&scoped, self.job.id, self.worker).await?;
            scoped.commit().await?;
            return Ok(Outcome::Gone);
        }
        meetings::set_processed(&scoped, self.meeting.id, now).await?;
        settle_reservation(&scoped, self.job, &self.meeting, now).await?;
        self.pipeline.tasks.processed(&scoped, &self.meeting, to).await?;
        let has_transcript = !parked && self.pipeline.transcriber.model().is_some();
        let (owner, id) = (self.meeting.user_id, Some(self.meeting.id));
        if !parked {
            crate::events::publish(&scoped, owner, id, Payload::MeetingReady { has_transcript }).await?;
        }
        let ended = Payload::ProcessingEnded {
            status: to,
            failure_reason: String::new(),
            has_transcript,
        };
        crate::events::publish(&scoped, owner, id, ended).await?;
        jobs::succeed(&scoped, self.job.id, self.worker).await?;
        scoped.commit().await?;
        Ok(if parked { Outcome::Parked } else { Outcome::Ready })
    }
}
