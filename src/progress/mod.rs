//! Progress: per-skill scores over time, the standing and streaks computed
//! from them, and the export of a person's data.

pub mod entity;
pub mod export;
pub mod service;
pub mod standing;
pub mod store;

pub use service::ProgressApi;

use uuid::Uuid;

use crate::db::Scoped;
use crate::error::AppResult;

/// Where progress learns a person's time zone, which their profile keeps.
/// Profiles reads progress (its import writes practice history), so
/// progress cannot read profiles; `server.rs` plugs the profile's in.
#[tonic::async_trait]
pub trait TimeZones: Send + Sync + std::fmt::Debug {
    /// The time zone of `user_id` (UTC when they set none).
    async fn zone(&self, scoped: &Scoped, user_id: Uuid) -> AppResult<chrono_tz::Tz>;
}
