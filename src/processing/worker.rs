//! Workers: claim jobs, run the pipeline while renewing the lease, and
//! record how each attempt ended.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::entity::{RunState, job};
use super::jobs;
use super::pipeline::{self, Failure, Outcome, Pipeline, StageEvent};
use crate::error::AppResult;
use crate::events::model::{Payload, StagePhase};
use crate::meetings::entity::Status;
use crate::meetings::store;

/// Runs up to `slots` jobs at once until `shutdown`; a job in progress at
/// shutdown is handed back for another worker. Free slots are filled by
/// one claim for as many jobs as there are free slots; each claim holds
/// its jobs under its own worker name (`host-pid-n`), so the fence of one
/// attempt never passes for another.
pub async fn run(pipeline: Pipeline, slots: usize, shutdown: CancellationToken) {
    let pipeline = Arc::new(pipeline);
    let config = &pipeline.config.processing;
    let signals = pipeline.db.signals().clone();
    let process = format!("{}-{}", hostname(), std::process::id());
    let mut running = tokio::task::JoinSet::new();
    let mut claims = 0u64;
    while slots > 0 && !shutdown.is_cancelled() {
        let free = slots.saturating_sub(running.len());
        if free == 0 {
            // Every slot busy: wait for one to end.
            tokio::select! {
                _ = running.join_next() => {}
                () = shutdown.cancelled() => {}
            }
            continue;
        }
        // Listening before looking, so work queued in between still wakes
        // the loop; work queued by other processes is found by polling.
        let queued = signals.work().notified();
        tokio::pin!(queued);
        queued.as_mut().enable();
        claims += 1;
        let worker = format!("{process}-{claims}");
        match jobs::claim(&pipeline.db, &worker, config.lease, free).await {
            Ok(claimed) if !claimed.is_empty() => {
                for job in claimed {
                    let (pipeline, worker, shutdown) = (pipeline.clone(), worker.clone(), shutdown.clone());
                    running.spawn(async move {
                        if let Err(error) = attempt(&pipeline, &job, &worker, &shutdown).await {
                            tracing::warn!(%error, job = %job.id, "could not record the end of a job's attempt");
                        }
                    });
                }
                continue;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "could not claim a job"),
        }
        tokio::select! {
            () = tokio::time::sleep(config.poll) => {}
            () = &mut queued => {}
            Some(_) = running.join_next() => {}
            () = shutdown.cancelled() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}

/// One attempt at `job`.
async fn attempt(
    pipeline: &Pipeline,
    job: &job::Model,
    worker: &str,
    shutdown: &CancellationToken,
) -> AppResult<()> {
    let config = &pipeline.config.processing;
    if job.attempts > job.max_attempts {
        // Its workers keep dying: give up rather than loop forever.
        let failure = Failure {
            run: None,
            message: "processing was interrupted too many times".into(),
            permanent: true,
        };
        return record_failure(pipeline, job, worker, failure).await;
    }
    let lost = CancellationToken::new();
    let heartbeat = {
        let (db, lost, worker, id, lease) = (
            pipeline.db.clone(),
            lost.clone(),
            worker.to_owned(),
            job.id,
            config.lease,
        );
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(lease / 3).await;
                match jobs::renew(&db, id, &worker, lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost.cancel();
                        return;
                    }
                    Err(error) => tracing::warn!(%error, "could not renew a job's lease"),
                }
            }
        })
    };
    let work = async {
        match (job.meeting_id, job.subject_id, pipeline.tasks.task(&job.kind)) {
            (Some(_), _, _) => pipeline.run(job, worker).await,
            (None, Some(subject), Some(task)) => task.run(job, subject, worker).await.map(|()| Outcome::Done),
            _ => Err(Failure::permanent(format!(
                "no worker here runs `{}` jobs",
                job.kind
            ))),
        }
    };
    let result = tokio::select! {
        result = work => Some(result),
        () = lost.cancelled() => {
            tracing::warn!(job = %job.id, "lost the job's lease; another worker has it");
            None
        }
        () = shutdown.cancelled() => {
            let scoped = pipeline.db.as_service().await?;
            jobs::release(&scoped, job, worker).await?;
            scoped.commit().await?;
            None
        }
    };
    heartbeat.abort();
    match result {
        None => Ok(()),
        Some(Ok(outcome)) => {
            tracing::info!(job = %job.id, ?outcome, "job finished");
            crate::metrics::job_outcome(match outcome {
                Outcome::Ready => "ready",
                Outcome::Parked => "awaiting_transcription",
                Outcome::Gone => "meeting_deleted",
                Outcome::Done => "task_done",
            });
            Ok(())
        }
        Some(Err(failure)) => record_failure(pipeline, job, worker, failure).await,
    }
}

/// Records a failed attempt: the stage run, an event, and the job either
/// waiting for its next attempt or dead with the meeting failed.
async fn record_failure(
    pipeline: &Pipeline,
    job: &job::Model,
    worker: &str,
    failure: Failure,
) -> AppResult<()> {
    let config = &pipeline.config.processing;
    let will_retry = !failure.permanent && job.attempts < job.max_attempts;
    tracing::warn!(job = %job.id, error = %failure.message, will_retry, "job attempt failed");
    let scoped = pipeline.db.as_service().await?;
    let wait = will_retry.then(|| jobs::backoff(job.attempts, config.backoff, config.backoff_max));
    crate::metrics::job_outcome(if will_retry { "retried" } else { "dead" });
    jobs::fail(&scoped, job.id, worker, &failure.message, wait).await?;
    if !will_retry {
        super::release_reservation(&scoped, job).await?;
    }
    let Some(meeting_id) = job.meeting_id else {
        // Another domain's task: it records the failure its own way.
        if !will_retry && let (Some(subject), Some(task)) = (job.subject_id, pipeline.tasks.task(&job.kind)) {
            task.gave_up(&scoped, subject, &failure.message).await?;
        }
        return scoped.commit().await;
    };
    let meeting = match store::get(&scoped, meeting_id).await {
        Ok(meeting) => meeting,
        Err(crate::error::AppError::NotFound { .. }) => return scoped.commit().await,
        Err(e) => return Err(e),
    };
    match failure.run {
        Some((stage, attempt)) => {
            super::store::end_run(
                &scoped,
                meeting.id,
                stage,
                attempt,
                RunState::Failed,
                Some(&failure.message),
            )
            .await?;
        }
        // A failure outside any stage: a worker that kept dying.
        None => super::store::fail_interrupted_runs(&scoped, meeting.id).await?,
    }
    // It is reported at the stage the meeting was in.
    let run = failure
        .run
        .or_else(|| Some((meeting.current_stage?, job.attempts)));
    if let Some((stage, attempt)) = run {
        pipeline::announce(
            &scoped,
            &meeting,
            StageEvent {
                error: failure.message.clone(),
                will_retry,
                ..StageEvent::new(stage, attempt, StagePhase::Failed)
            },
        )
        .await?;
    }
    if will_retry {
        store::transition(&scoped, meeting.id, &[Status::Processing], Status::Queued).await?;
    } else {
        store::transition(
            &scoped,
            meeting.id,
            &[Status::Queued, Status::Processing],
            Status::Failed,
        )
        .await?;
        store::set_failure(&scoped, meeting.id, &failure.message).await?;
        let has_transcript = crate::meetings::results::has_transcript(&scoped, meeting.id).await?;
        let ended = Payload::ProcessingEnded {
            status: Status::Failed,
            failure_reason: failure.message.clone(),
            has_transcript,
        };
        crate::events::publish(&scoped, meeting.user_id, Some(meeting.id), ended).await?;
        pipeline
            .tasks
            .processed(&scoped, &meeting, Status::Failed)
            .await?;
    }
    scoped.commit().await
}
