//! Code generated from `proto/` by `build.rs`.

/// The debrief API, package `debrief.v1`.
pub mod debrief {
    /// Version 1 of the API.
    pub mod v1 {
        // Generated code: its doc comments come from the protos and its
        // shapes from prost, so lints on it are not ours to fix.
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("debrief.v1");
    }
}

/// The googleapis types the API uses (`google.api.HttpBody`, HTTP rules).
pub mod google {
    /// Package `google.api`.
    pub mod api {
        #![allow(clippy::all, clippy::pedantic, missing_docs)]
        tonic::include_proto!("google.api");
    }
}

pub use debrief::v1;

/// The encoded `FileDescriptorSet` of every proto file, with source info and
/// extension options (`google.api.http`) kept.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/debrief_descriptor.bin"));

/// Fully qualified names of the ten debrief services.
pub const SERVICE_NAMES: [&str; 10] = [
    "debrief.v1.AuthService",
    "debrief.v1.ProfileService",
    "debrief.v1.MeetingService",
    "debrief.v1.UploadService",
    "debrief.v1.ProcessingService",
    "debrief.v1.PracticeService",
    "debrief.v1.ProgressService",
    "debrief.v1.UsageService",
    "debrief.v1.EventService",
    "debrief.v1.AdminService",
];
