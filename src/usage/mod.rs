//! Usage and limits: plans, per-period counters and quota enforcement.

pub mod assign;
pub mod catalog;
pub mod convert;
pub mod dashboard;
pub mod entity;
pub mod export;
pub mod ledger;
pub mod limits;
pub mod model;
pub mod period;
pub mod quota;
pub mod service;
pub mod store;

pub use service::UsageApi;
