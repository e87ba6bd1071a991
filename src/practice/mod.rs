//! Practice: versioned modules of exercises whose prompts are rendered for
//! each person, recommendations from their meetings, and practice sessions
//! with feedback on written and spoken attempts.

pub mod ai;
pub mod catalog;
pub mod convert;
pub mod entity;
pub mod export;
pub mod jobs;
pub mod levels;
pub mod model;
pub mod personal;
pub mod recommend;
pub mod rubric;
pub mod run;
pub mod scoring;
pub mod seed;
pub mod service;
pub mod sessions;
pub mod templates;

pub use service::PracticeApi;
