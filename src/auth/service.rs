//! The gRPC AuthService.

use crate::pb::v1::auth_service_server::AuthService;

/// AuthService. Its RPCs answer UNIMPLEMENTED until they are built.
#[derive(Debug, Clone, Copy, Default)]
pub struct AuthApi;

#[tonic::async_trait]
impl AuthService for AuthApi {}
