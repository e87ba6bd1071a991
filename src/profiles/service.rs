//! The gRPC ProfileService.

use crate::pb::v1::profile_service_server::ProfileService;

/// ProfileService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProfileApi;

#[tonic::async_trait]
impl ProfileService for ProfileApi {}
