//! Uploads: resumable chunked uploads of meeting recordings, their
//! validation and scanning, and the client-streaming upload.

pub mod append;
pub mod clamd;
pub mod complete;
pub mod digest;
pub mod entity;
pub mod lifecycle;
pub mod model;
pub mod scan;
pub mod service;
pub mod store;
pub mod stream;

pub use service::UploadApi;
