//! Profiles: display name, onboarding answers, goals, and the import of the browser-only app's localStorage.

pub mod service;

pub use service::ProfileApi;
