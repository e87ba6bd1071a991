//! Profiles: display name, onboarding answers, goals, and the import of the browser-only app's localStorage.

pub mod entity;
pub mod import;
pub mod model;
pub mod service;
pub mod store;

pub use service::ProfileApi;
