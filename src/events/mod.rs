//! Events: the durable per-user event log and its live streams.

pub mod entity;
pub mod listener;
pub mod model;
pub mod publish;
pub mod service;
pub mod store;
pub mod stream;

pub use publish::{publish, wake};
pub use service::EventApi;
