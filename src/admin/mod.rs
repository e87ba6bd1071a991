//! Administration: users and roles, the audit log and aggregate analytics.

pub mod audit_log;
pub mod service;
pub mod users;

pub use service::AdminApi;
