//! The gRPC AdminService: every RPC needs the admin role.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{analytics, audit_log, notices, users};
use crate::auth::Auth;
use crate::caller::Caller;
use crate::context::RequestMeta;
use crate::pb::v1 as pb;
use crate::pb::v1::admin_service_server::AdminService;
use crate::shared::Shared;

/// AdminService.
#[derive(Clone, Debug)]
pub struct AdminApi {
    state: Shared,
    auth: Arc<Auth>,
}

impl AdminApi {
    /// The service over the shared state and authentication.
    pub fn new(state: Shared, auth: Arc<Auth>) -> Self {
        Self { state, auth }
    }
}

/// The admin making the request, or PERMISSION_DENIED.
fn admin<T>(request: &Request<T>) -> Result<uuid::Uuid, Status> {
    let caller = Caller::of(request)?;
    caller.require_admin()?;
    Ok(caller.user_id)
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Result<Response<pb::ListUsersResponse>, Status> {
        let admin_id = admin(&request)?;
        Ok(Response::new(
            users::list(&self.state.db, admin_id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_role(
        &self,
        request: Request<pb::SetUserRoleRequest>,
    ) -> Result<Response<pb::SetUserRoleResponse>, Status> {
        let admin_id = admin(&request)?;
        let meta = RequestMeta::of(&request);
        let user = users::set_role(&self.state.db, &meta, admin_id, request.into_inner()).await?;
        // Roles are read with session checks: apply the change here at once.
        self.auth.authenticator.forget_all();
        Ok(Response::new(pb::SetUserRoleResponse { user: Some(user) }))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let admin_id = admin(&request)?;
        let meta = RequestMeta::of(&request);
        let now = self.state.clock.now();
        users::delete(
            &self.auth,
            &self.state.db,
            &meta,
            admin_id,
            request.into_inner(),
            now,
        )
        .await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn get_analytics(
        &self,
        request: Request<pb::GetAnalyticsRequest>,
    ) -> Result<Response<pb::GetAnalyticsResponse>, Status> {
        let admin_id = admin(&request)?;
        let asked = analytics::Asked::parse(request.get_ref(), self.state.clock.now())?;
        let min_group = self.state.config.analytics_min_group;
        let analytics = analytics::analytics(&self.state.db, admin_id, &asked, min_group).await?;
        Ok(Response::new(pb::GetAnalyticsResponse {
            analytics: Some(analytics),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn send_system_notice(
        &self,
        request: Request<pb::SendSystemNoticeRequest>,
    ) -> Result<Response<pb::SendSystemNoticeResponse>, Status> {
        let admin_id = admin(&request)?;
        let meta = RequestMeta::of(&request);
        Ok(Response::new(
            notices::send(&self.state.db, &meta, admin_id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_audit_log(
        &self,
        request: Request<pb::ListAuditLogRequest>,
    ) -> Result<Response<pb::ListAuditLogResponse>, Status> {
        let admin_id = admin(&request)?;
        Ok(Response::new(
            audit_log::list(&self.state.db, admin_id, request.into_inner()).await?,
        ))
    }
}
