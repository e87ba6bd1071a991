//! Progress: per-skill scores over time, streaks, and the export of a user's data.

pub mod entity;
pub mod service;

pub use service::ProgressApi;
