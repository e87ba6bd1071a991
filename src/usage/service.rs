//! The gRPC UsageService.

use tonic::{Request, Response, Status};

use super::{assign, catalog, dashboard, store};
use crate::caller::Caller;
use crate::context::RequestMeta;
use crate::error::AppError;
use crate::names::parse_name;
use crate::pagination::PageRequest;
use crate::pb::v1 as pb;
use crate::pb::v1::usage_service_server::UsageService;
use crate::pb::v1::{
    GetUsageRequest, GetUsageResponse, ListPlansRequest, ListPlansResponse, SetUserPlanRequest,
    SetUserPlanResponse, UpdatePlanRequest, UpdatePlanResponse,
};
use crate::shared::Shared;

/// UsageService. ListPlans needs no credentials.
#[derive(Clone, Debug)]
pub struct UsageApi {
    state: Shared,
}

impl UsageApi {
    /// The service over the shared state.
    pub fn new(state: Shared) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
    #[tracing::instrument(skip_all)]
    async fn get_usage(
        &self,
        request: Request<GetUsageRequest>,
    ) -> Result<Response<GetUsageResponse>, Status> {
        let caller = Caller::of(&request)?;
        let target = match request.get_ref().user.as_str() {
            "" => caller.user_id,
            name => parse_name("user", name, "users")?,
        };
        // Reading someone else's usage is for admins; the service scope
        // lets the read also give back their expired reservations.
        let scoped = if target == caller.user_id {
            self.state.db.as_user(target).await?
        } else {
            caller.require_admin().map_err(|_| AppError::PermissionDenied {
                reason: "ADMIN_ONLY",
                message: "only administrators may read another user's usage".into(),
            })?;
            self.state.db.as_service().await?
        };
        let usage = dashboard::usage(
            &scoped,
            target,
            &self.state.config.upgrade_url,
            chrono::Utc::now(),
        )
        .await?;
        scoped.commit().await?;
        Ok(Response::new(GetUsageResponse { usage: Some(usage) }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_plans(
        &self,
        request: Request<ListPlansRequest>,
    ) -> Result<Response<ListPlansResponse>, Status> {
        let ListPlansRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let page = PageRequest::<store::PlanCursor>::parse(page_size, &page_token, 50, 200)?;
        // Plans are shared content, not user data: no scope needed.
        let (plans, next) = store::list_plans(self.state.db.unscoped(), page.size, page.after).await?;
        Ok(Response::new(ListPlansResponse {
            plans: plans.into_iter().map(pb::Plan::from).collect(),
            next_page_token: PageRequest::token(next.as_ref()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_plan(
        &self,
        request: Request<UpdatePlanRequest>,
    ) -> Result<Response<UpdatePlanResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require_admin()?;
        let admin_id = caller.user_id;
        let meta = RequestMeta::of(&request);
        let scoped = self.state.db.as_service().await?;
        let plan = catalog::update(&scoped, &meta, admin_id, request.into_inner()).await?;
        scoped.commit().await?;
        Ok(Response::new(UpdatePlanResponse { plan: Some(plan) }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_plan(
        &self,
        request: Request<SetUserPlanRequest>,
    ) -> Result<Response<SetUserPlanResponse>, Status> {
        let caller = Caller::of(&request)?;
        caller.require_admin()?;
        let admin_id = caller.user_id;
        let meta = RequestMeta::of(&request);
        let change = assign::PlanChange::parse(request.into_inner())?;
        let user_id = change.user_id;
        let now = chrono::Utc::now();
        let scoped = self.state.db.as_service().await?;
        assign::apply(&scoped, &meta, admin_id, change, now).await?;
        let usage = dashboard::usage(&scoped, user_id, &self.state.config.upgrade_url, now).await?;
        scoped.commit().await?;
        Ok(Response::new(SetUserPlanResponse { usage: Some(usage) }))
    }
}
