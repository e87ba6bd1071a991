//! The gRPC PracticeService.

use crate::pb::v1::practice_service_server::PracticeService;

/// PracticeService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct PracticeApi;

#[tonic::async_trait]
impl PracticeService for PracticeApi {}
