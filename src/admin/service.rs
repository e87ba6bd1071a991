//! The gRPC AdminService.

use crate::pb::v1::admin_service_server::AdminService;

/// AdminService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdminApi;

#[tonic::async_trait]
impl AdminService for AdminApi {}
