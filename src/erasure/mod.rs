//! Erasure: when an account closes (`auth::closing`), everything it owns is
//! removed by a durable job on the processing queue.
//!
//! [`Closing`] queues the job in the transaction that closes the account,
//! and stops the account's other jobs. [`EraseAccount`] runs it: it waits
//! for any worker still holding one of those jobs to let go (so nothing is
//! written after the erasure), deletes every stored object — each
//! meeting's originals and converted audio, each upload's chunks — and
//! then the account's row, which takes every owned row with it. A failure
//! (storage not answering) is retried with backoff for as long as it takes.
//! The audit log keeps its entries about the account, which hold ids only.

use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::auth::entity::user;
use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::processing::entity::job;
use crate::processing::jobs;
use crate::processing::pipeline::Failure;
use crate::shared::Shared;

/// The job kind.
pub const ERASE_ACCOUNT: &str = "erase_account";

/// Attempts before the job would be given up: in effect never, since each
/// waits longer (up to the queue's longest backoff) and only storage or
/// the database not answering fails one.
const ATTEMPTS: i32 = 100_000;

/// Queues the erasure of a closing account.
#[derive(Debug)]
pub struct Closing;

#[tonic::async_trait]
impl crate::auth::Closing for Closing {
    async fn closing(&self, scoped: &Scoped, user_id: Uuid) -> AppResult<()> {
        jobs::stop_all_of_user(scoped, user_id, None, "the account was deleted").await?;
        jobs::enqueue_task(scoped, user_id, ERASE_ACCOUNT, user_id, ATTEMPTS).await
    }
}

/// Runs the erasure jobs.
#[derive(Debug, Clone)]
pub struct EraseAccount(pub Shared);

impl EraseAccount {
    /// Every storage prefix of the account's objects.
    async fn prefixes(&self, user_id: Uuid) -> AppResult<Vec<String>> {
        let scoped = self.0.db.as_service().await?;
        let meetings = crate::meetings::store::ids_of_user(&scoped, user_id).await?;
        let uploads = crate::uploads::store::ids_of_user(&scoped, user_id).await?;
        Ok(meetings
            .into_iter()
            .map(crate::meetings::store::object_prefix)
            .chain(uploads.into_iter().map(crate::uploads::store::upload_prefix))
            .collect())
    }
}

/// A failed attempt, to try again.
fn retry(message: String) -> Failure {
    tracing::warn!(%message, "erasing an account must wait");
    Failure {
        run: None,
        message,
        permanent: false,
    }
}

#[tonic::async_trait]
impl crate::processing::tasks::Task for EraseAccount {
    fn kind(&self) -> &'static str {
        ERASE_ACCOUNT
    }

    async fn run(&self, job: &job::Model, user_id: Uuid, worker: &str) -> Result<(), Failure> {
        let db = &self.0.db;
        {
            let scoped = db.as_service().await?;
            // Stopped jobs whose workers have not yet noticed: wait them out.
            if let Some(until) = jobs::live_lease_of_user(&scoped, user_id, job.id).await? {
                return Err(retry(format!(
                    "a worker holds one of the account's jobs until {until}"
                )));
            }
        }
        for prefix in self.prefixes(user_id).await? {
            if let Err(error) = self.0.storage.delete_prefix(&prefix).await {
                return Err(retry(format!("storage did not delete {prefix}: {error}")));
            }
        }
        let scoped = db.as_service().await?;
        jobs::fence(&scoped, job.id, worker).await?;
        // The account's row, and with it every row it owns (this job's too).
        scoped
            .delete_many::<user::Entity>()
            .filter(user::Column::Id.eq(user_id))
            .exec()
            .await?;
        audit::record(
            &scoped,
            &RequestMeta::default(),
            Entry::about("account.erased", user_id),
        )
        .await?;
        scoped.commit().await?;
        tracing::info!(user = %user_id, "erased a closed account");
        Ok(())
    }

    async fn gave_up(&self, _scoped: &Scoped, user_id: Uuid, reason: &str) -> AppResult<()> {
        tracing::error!(user = %user_id, %reason, "gave up erasing a closed account: retry its job by hand");
        Ok(())
    }
}
