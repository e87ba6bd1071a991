//! Administration: users and roles, the audit log, system notices and
//! aggregate analytics.

pub mod analytics;
pub mod audit_log;
pub mod notices;
pub mod service;
pub mod users;

pub use service::AdminApi;
