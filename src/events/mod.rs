//! Events: the durable per-user event log and its live streams.

pub mod service;

pub use service::EventApi;
