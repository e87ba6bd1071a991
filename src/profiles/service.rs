//! The gRPC ProfileService: every RPC acts on the caller's own profile.

use tonic::{Request, Response, Status};

use super::model::ProfileFields;
use super::{import, store};
use crate::caller::Caller;
use crate::error::{AppError, Violations};
use crate::pb::v1 as pb;
use crate::pb::v1::profile_service_server::ProfileService;
use crate::pb::v1::{
    GetProfileRequest, GetProfileResponse, ImportLocalStateRequest, ImportLocalStateResponse,
    UpdateProfileRequest, UpdateProfileResponse,
};
use crate::shared::Shared;

/// ProfileService.
#[derive(Clone, Debug)]
pub struct ProfileApi {
    state: Shared,
}

impl ProfileApi {
    /// The service over the shared state.
    pub fn new(state: Shared) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    #[tracing::instrument(skip_all)]
    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let caller = Caller::of(&request)?;
        let scoped = self.state.db.read_as_user(caller.user_id).await?;
        let profile = store::get(&scoped, caller.user_id).await?;
        Ok(Response::new(GetProfileResponse {
            profile: Some(pb::Profile::from(&profile)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_profile(
        &self,
        request: Request<UpdateProfileRequest>,
    ) -> Result<Response<UpdateProfileResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let UpdateProfileRequest { profile, update_mask } = request.into_inner();
        let update = profile.ok_or_else(|| AppError::invalid("profile", "is required"))?;
        let paths = update_mask.map(|mask| mask.paths).unwrap_or_default();
        let scoped = self.state.db.as_user(user_id).await?;
        let current = store::get(&scoped, user_id).await?;
        let mut merged = pb::Profile::from(&current);
        let mut bad = Violations::default();
        bad.check(store::merge(&mut merged, update, &paths))?;
        let fields =
            bad.check(ProfileFields::parse(&merged, "profile").map_err(AppError::InvalidArgument))?;
        let fields = bad.finish(|| fields)?;
        let saved = store::save(&scoped, current, &fields).await?;
        scoped.commit().await?;
        Ok(Response::new(UpdateProfileResponse {
            profile: Some(pb::Profile::from(&saved)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn import_local_state(
        &self,
        request: Request<ImportLocalStateRequest>,
    ) -> Result<Response<ImportLocalStateResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let state = request
            .into_inner()
            .state
            .ok_or_else(|| AppError::invalid("state", "is required"))?;
        Ok(Response::new(import::run(&self.state.db, user_id, state).await?))
    }
}
