//! The gRPC EventService.

use crate::pb::v1::event_service_server::EventService;

/// EventService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventApi;

#[tonic::async_trait]
impl EventService for EventApi {}
