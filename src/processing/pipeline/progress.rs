//! How a run reports itself: the stage order and overall percentage, stage
//! events, and the progress of long blocking work.

use super::{Failure, Run};
use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::events::model::{Payload, StagePhase};
use crate::lifecycle::Stage;
use crate::meetings::entity as meeting;
use crate::processing::jobs;

/// The stages in order.
pub const STAGES: [Stage; 7] = [
    Stage::Validate,
    Stage::Convert,
    Stage::Segment,
    Stage::Sample,
    Stage::Transcribe,
    Stage::Analyze,
    Stage::Cleanup,
];

/// Overall progress when `stage` starts, 0 to 100.
pub fn percent_at(stage: Stage) -> f64 {
    let index = STAGES.iter().position(|s| *s == stage).unwrap_or(0);
    index as f64 * 100.0 / STAGES.len() as f64
}

/// What a stage event says.
#[derive(Debug, Clone)]
pub struct StageEvent {
    /// The stage.
    pub stage: Stage,
    /// Which attempt.
    pub attempt: i32,
    /// What happened.
    pub phase: StagePhase,
    /// How much of the stage is done, 0 to 100.
    pub stage_percent: f64,
    /// Why it failed.
    pub error: String,
    /// Whether a failed stage will be tried again by itself.
    pub will_retry: bool,
}

impl StageEvent {
    /// The event of `phase`: nothing done when it starts or fails, all of
    /// it once completed or skipped.
    pub fn new(stage: Stage, attempt: i32, phase: StagePhase) -> Self {
        let done = matches!(phase, StagePhase::Completed | StagePhase::Skipped);
        Self {
            stage,
            attempt,
            phase,
            stage_percent: if done { 100.0 } else { 0.0 },
            error: String::new(),
            will_retry: false,
        }
    }

    fn into_payload(self) -> Payload {
        let share = 100.0 / STAGES.len() as f64;
        Payload::ProcessingStage {
            phase: self.phase,
            stage: self.stage,
            attempt: self.attempt,
            percent: percent_at(self.stage) + share * self.stage_percent / 100.0,
            stage_percent: self.stage_percent,
            error: self.error,
            will_retry: self.will_retry,
        }
    }
}

/// Publishes a stage event for the meeting's owner.
pub async fn announce(scoped: &Scoped, meeting: &meeting::Model, event: StageEvent) -> AppResult<()> {
    crate::events::publish(scoped, meeting.user_id, Some(meeting.id), event.into_payload())
        .await
        .map(|_| ())
}

impl Run<'_> {
    /// Runs blocking audio `work` for `stage` and publishes its progress
    /// (the share done, 0 to 1, that `work` reports) as events: at most one
    /// per whole percent and per `DEBRIEF_PROGRESS_INTERVAL`.
    pub(super) async fn blocking_with_progress<T, F>(
        &self,
        stage: Stage,
        attempt: i32,
        work: F,
    ) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn FnMut(f64)) -> T + Send + 'static,
    {
        let interval = self.pipeline.config.processing.progress_interval;
        let (tx, mut rx) = tokio::sync::watch::channel(0.0);
        let mut task = tokio::task::spawn_blocking(move || {
            let (mut last, mut reported) = (std::time::Instant::now(), 0.0);
            let mut report = |done: f64| {
                let percent = (done * 100.0).floor();
                if percent > reported && percent < 100.0 && last.elapsed() >= interval {
                    (last, reported) = (std::time::Instant::now(), percent);
                    let _ = tx.send(percent);
                }
            };
            work(&mut report)
        });
        loop {
            tokio::select! {
                done = &mut task => return done.map_err(|e| AppError::internal(e).into()),
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The work is ending: nothing more will be reported.
                        return (&mut task).await.map_err(|e| AppError::internal(e).into());
                    }
                    let percent = *rx.borrow_and_update();
                    if let Err(error) = self.progress(stage, attempt, percent).await {
                        tracing::debug!(%error, "could not report a stage's progress");
                    }
                }
            }
        }
    }

    /// Publishes that `stage_percent` of the stage is done.
    pub(super) async fn progress(&self, stage: Stage, attempt: i32, stage_percent: f64) -> AppResult<()> {
        let scoped = self.pipeline.db.as_service().await?;
        jobs::fence(&scoped, self.job.id, self.worker).await?;
        let event = StageEvent {
            stage_percent,
            ..StageEvent::new(stage, attempt, StagePhase::Progress)
        };
        announce(&scoped, &self.meeting, event).await?;
        scoped.commit().await
    }
}
