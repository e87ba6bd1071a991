//! The gRPC MeetingService.

use crate::pb::v1::meeting_service_server::MeetingService;

/// MeetingService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct MeetingApi;

#[tonic::async_trait]
impl MeetingService for MeetingApi {}
