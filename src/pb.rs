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
    v1::auth_service_server::SERVICE_NAME,
    v1::profile_service_server::SERVICE_NAME,
    v1::meeting_service_server::SERVICE_NAME,
    v1::upload_service_server::SERVICE_NAME,
    v1::processing_service_server::SERVICE_NAME,
    v1::practice_service_server::SERVICE_NAME,
    v1::progress_service_server::SERVICE_NAME,
    v1::usage_service_server::SERVICE_NAME,
    v1::event_service_server::SERVICE_NAME,
    v1::admin_service_server::SERVICE_NAME,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(needle: &[u8]) -> bool {
        FILE_DESCRIPTOR_SET
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn the_descriptor_set_keeps_http_rules_and_comments() {
        // Path templates exist only inside the google.api.http options, and
        // comments only in source info: both must survive the build.
        assert!(contains(b"/v1/{name=meetings/*}:watch"));
        assert!(contains(b"/v1/{name=plans/*/samplingConfig}"));
        assert!(contains(b"Lists the plans and their limits."));
        // The error model is included for the HTTP edge.
        assert!(contains(b"google/rpc/error_details.proto"));
    }
}
