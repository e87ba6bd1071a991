//! Meetings: the caller's recorded meetings and what processing learned about them.

pub mod entity;
pub mod service;

pub use service::MeetingApi;
