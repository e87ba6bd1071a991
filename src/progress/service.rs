//! The gRPC ProgressService.

use crate::pb::v1::progress_service_server::ProgressService;

/// ProgressService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressApi;

#[tonic::async_trait]
impl ProgressService for ProgressApi {}
