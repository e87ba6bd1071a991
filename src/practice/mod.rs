//! Practice: modules, exercises, recommendations and practice sessions with feedback.

pub mod service;

pub use service::PracticeApi;
