//! The gRPC UploadService.

use crate::pb::v1::upload_service_server::UploadService;

/// UploadService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadApi;

#[tonic::async_trait]
impl UploadService for UploadApi {}
