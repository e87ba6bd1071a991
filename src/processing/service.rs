//! The gRPC ProcessingService.

use crate::pb::v1::processing_service_server::ProcessingService;

/// ProcessingService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessingApi;

#[tonic::async_trait]
impl ProcessingService for ProcessingApi {}
