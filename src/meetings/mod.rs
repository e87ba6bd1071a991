//! Meetings: the caller's recorded meetings and what processing learned about them.

pub mod convert;
pub mod entity;
pub mod model;
pub mod service;
pub mod store;

pub use service::MeetingApi;
