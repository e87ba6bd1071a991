//! The gRPC PracticeService: validate, call the stores, answer. Its RPCs
//! come in two groups, each in a file of its own: the catalog of modules
//! (`modules.rs`) and the caller's recommendations, sessions and attempts
//! (`sessions.rs`).

mod modules;
mod sessions;

use tonic::{Request, Response, Status};

use super::scoring::Scorer;
use crate::pb::v1 as pb;
use crate::pb::v1::practice_service_server::PracticeService;
use crate::shared::Shared;

/// PracticeService.
#[derive(Clone, Debug)]
pub struct PracticeApi {
    state: Shared,
    scorer: Scorer,
}

impl PracticeApi {
    /// The service over the shared state.
    pub fn new(state: Shared) -> Self {
        let scorer = Scorer::new(&state.config.processing.filler_words);
        Self { state, scorer }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl PracticeService for PracticeApi {
    async fn list_modules(&self, request: Request<pb::ListModulesRequest>) -> Reply<pb::ListModulesResponse> {
        modules::list(self, request).await
    }

    async fn get_module(&self, request: Request<pb::GetModuleRequest>) -> Reply<pb::GetModuleResponse> {
        modules::get(self, request).await
    }

    async fn create_module(
        &self,
        request: Request<pb::CreateModuleRequest>,
    ) -> Reply<pb::CreateModuleResponse> {
        modules::create(self, request).await
    }

    async fn update_module(
        &self,
        request: Request<pb::UpdateModuleRequest>,
    ) -> Reply<pb::UpdateModuleResponse> {
        modules::update(self, request).await
    }

    async fn publish_module(
        &self,
        request: Request<pb::PublishModuleRequest>,
    ) -> Reply<pb::PublishModuleResponse> {
        modules::publish(self, request).await
    }

    async fn archive_module(
        &self,
        request: Request<pb::ArchiveModuleRequest>,
    ) -> Reply<pb::ArchiveModuleResponse> {
        modules::archive(self, request).await
    }

    async fn list_recommendations(
        &self,
        request: Request<pb::ListRecommendationsRequest>,
    ) -> Reply<pb::ListRecommendationsResponse> {
        sessions::recommendations(self, request).await
    }

    async fn start_session(
        &self,
        request: Request<pb::StartSessionRequest>,
    ) -> Reply<pb::StartSessionResponse> {
        sessions::start(self, request).await
    }

    async fn get_session(&self, request: Request<pb::GetSessionRequest>) -> Reply<pb::GetSessionResponse> {
        sessions::get(self, request).await
    }

    async fn list_sessions(
        &self,
        request: Request<pb::PracticeServiceListSessionsRequest>,
    ) -> Reply<pb::PracticeServiceListSessionsResponse> {
        sessions::list(self, request).await
    }

    async fn submit_attempt(
        &self,
        request: Request<pb::SubmitAttemptRequest>,
    ) -> Reply<pb::SubmitAttemptResponse> {
        sessions::submit(self, request).await
    }

    async fn complete_session(
        &self,
        request: Request<pb::CompleteSessionRequest>,
    ) -> Reply<pb::CompleteSessionResponse> {
        sessions::complete(self, request).await
    }
}
