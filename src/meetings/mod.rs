//! Meetings: the caller's recorded meetings and what processing learned about them.

pub mod convert;
pub mod download;
pub mod entity;
pub mod export;
pub mod model;
pub mod results;
pub mod service;
pub mod store;

pub use service::MeetingApi;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use uuid::Uuid;

use crate::db::Scoped;
use crate::error::AppResult;

/// What a domain above meetings ends when a meeting is deleted (the uploads
/// domain ends an upload in progress). Meetings calls it without depending
/// on that domain; `server.rs` wires the implementation in.
#[tonic::async_trait]
pub trait OnDelete: Send + Sync + std::fmt::Debug {
    /// Runs in the deleting transaction; what it returns runs after commit.
    async fn meeting_deleted(
        &self,
        scoped: &Scoped,
        meeting_id: Uuid,
        now: DateTime<Utc>,
    ) -> AppResult<Option<BoxFuture<'static, ()>>>;
}
