//! Progress: per-skill scores over time, streaks, and the export of a user's data.

pub mod entity;
pub mod service;
pub mod store;

pub use service::ProgressApi;
