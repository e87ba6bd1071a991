//! The gRPC UsageService.

use tonic::{Request, Response, Status};

use super::{convert, store};
use crate::pagination::PageRequest;
use crate::pb::v1::usage_service_server::UsageService;
use crate::pb::v1::{ListPlansRequest, ListPlansResponse};
use crate::server::AppState;

/// UsageService. ListPlans is public; the other RPCs answer UNIMPLEMENTED
/// until they are built.
#[derive(Clone)]
pub struct UsageApi {
    state: AppState,
}

impl UsageApi {
    /// The service over the shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl UsageService for UsageApi {
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
            plans: plans
                .into_iter()
                .map(|(plan, limits)| convert::plan_to_proto(plan, limits))
                .collect(),
            next_page_token: PageRequest::token(next.as_ref()),
        }))
    }
}
