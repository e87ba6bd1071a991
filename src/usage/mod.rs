//! Usage and limits: plans, per-period counters and quota enforcement.

pub mod convert;
pub mod entity;
pub mod model;
pub mod service;
pub mod store;

pub use service::UsageApi;
