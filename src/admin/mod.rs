//! Administration: users and roles, the audit log and aggregate analytics.

pub mod service;

pub use service::AdminApi;
