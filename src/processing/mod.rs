//! Processing: the pipeline that converts, segments, samples, transcribes and analyses recordings.

pub mod service;

pub use service::ProcessingApi;
