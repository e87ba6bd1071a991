//! Uploads: resumable and streaming upload of meeting recordings, with validation and scanning.

pub mod service;

pub use service::UploadApi;
