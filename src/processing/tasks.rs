//! Work of other domains on the durable queue, and what processing tells
//! them when a recording is done.
//!
//! Processing knows nothing of those domains: they implement [`Task`] (a
//! job kind of their own about a subject of theirs, queued with
//! [`super::jobs::enqueue_task`]) and [`OnProcessed`], and `server.rs`
//! hands the implementations to the [`super::pipeline::Pipeline`]. A task's
//! job gets the same claims, leases, retries with backoff and dead letters
//! as a meeting's.

use std::sync::Arc;

use uuid::Uuid;

use super::entity::job;
use super::pipeline::Failure;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::lifecycle::Status;
use crate::meetings::entity as meeting;

/// A kind of job another domain runs on the queue.
#[tonic::async_trait]
pub trait Task: Send + Sync + std::fmt::Debug {
    /// The job kind it runs, e.g. `practice_feedback`.
    fn kind(&self) -> &'static str;

    /// Does the work of `job` (about `subject`), writing its results fenced
    /// by the job's lease ([`super::jobs::fence`]) and ending the job with
    /// [`super::jobs::succeed`] in the same transaction. A failure is
    /// retried with backoff until the job's attempts run out.
    async fn run(&self, job: &job::Model, subject: Uuid, worker: &str) -> Result<(), Failure>;

    /// Records, in `scoped` (which marks the job dead), that the work on
    /// `subject` failed for good, with a reason for its owner.
    async fn gave_up(&self, scoped: &Scoped, subject: Uuid, reason: &str) -> AppResult<()>;
}

/// What a domain does when processing of a meeting (of any kind) starts,
/// and when it ends for good: ready, waiting for transcription, or failed.
/// Runs in the transaction that records the change.
#[tonic::async_trait]
pub trait OnProcessed: Send + Sync + std::fmt::Debug {
    /// `meeting` reached `status` (processing, ready, awaiting
    /// transcription or failed).
    async fn processed(&self, scoped: &Scoped, meeting: &meeting::Model, status: Status) -> AppResult<()>;
}

/// The tasks a worker runs besides processing meetings, and who hears of
/// processed meetings.
#[derive(Debug, Clone, Default)]
pub struct Tasks {
    tasks: Vec<Arc<dyn Task>>,
    listeners: Vec<Arc<dyn OnProcessed>>,
}

impl Tasks {
    /// Adds a task.
    pub fn with_task(mut self, task: Arc<dyn Task>) -> Self {
        self.tasks.push(task);
        self
    }

    /// Adds a listener for processed meetings.
    pub fn with_listener(mut self, listener: Arc<dyn OnProcessed>) -> Self {
        self.listeners.push(listener);
        self
    }

    /// The task that runs jobs of `kind`.
    pub fn task(&self, kind: &str) -> Option<&Arc<dyn Task>> {
        self.tasks.iter().find(|task| task.kind() == kind)
    }

    /// Tells every listener that `meeting` reached `status`.
    pub async fn processed(
        &self,
        scoped: &Scoped,
        meeting: &meeting::Model,
        status: Status,
    ) -> AppResult<()> {
        for listener in &self.listeners {
            listener.processed(scoped, meeting, status).await?;
        }
        Ok(())
    }
}
