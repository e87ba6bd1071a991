//! Processing: the pipeline that converts, segments, samples, transcribes and analyses recordings.

pub mod service;

pub use service::ProcessingApi;

use uuid::Uuid;

use crate::db::Scoped;
use crate::error::{AppError, AppResult};
use crate::meetings::entity::Status;
use crate::meetings::store;

/// Hands an uploaded meeting to the pipeline: the one way into processing.
/// It moves the meeting to `queued` in the caller's transaction; the
/// pipeline's workers pick queued meetings up.
pub async fn enqueue(scoped: &Scoped, meeting_id: Uuid) -> AppResult<()> {
    if store::transition(scoped, meeting_id, &[Status::Uploaded], Status::Queued).await? {
        Ok(())
    } else {
        Err(AppError::internal(format!(
            "meeting {meeting_id} was not uploaded when queued"
        )))
    }
}
