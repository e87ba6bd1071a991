//! The gRPC AuthService: validate, call the flow, answer. The flows live in
//! [`super::accounts`], [`super::sessions`] and [`super::api_keys`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{Auth, accounts, api_keys, sessions, tickets};
use crate::caller::Caller;
use crate::context::RequestMeta;
use crate::error::AppError;
use crate::names::parse_name;
use crate::pb::v1 as pb;
use crate::pb::v1::auth_service_server::AuthService;
use crate::shared::Shared;

/// AuthService.
#[derive(Clone, Debug)]
pub struct AuthApi {
    state: Shared,
    auth: Arc<Auth>,
}

impl AuthApi {
    /// The service over the shared state and authentication.
    pub fn new(state: Shared, auth: Arc<Auth>) -> Self {
        Self { state, auth }
    }
}

/// The session of a caller who must be signed in with a session.
fn session_of(caller: &Caller) -> Result<uuid::Uuid, AppError> {
    caller.session_id().ok_or_else(|| AppError::FailedPrecondition {
        reason: "SESSION_REQUIRED",
        message: "this call needs a signed-in session, not an API key".into(),
        metadata: Default::default(),
    })
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl AuthService for AuthApi {
    #[tracing::instrument(skip_all)]
    async fn sign_up(&self, request: Request<pb::SignUpRequest>) -> Reply<pb::SignUpResponse> {
        let meta = RequestMeta::of(&request);
        let s = &self.state;
        Ok(Response::new(
            accounts::sign_up(&self.auth, &s.db, &meta, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn sign_in(&self, request: Request<pb::SignInRequest>) -> Reply<pb::SignInResponse> {
        let meta = RequestMeta::of(&request);
        let s = &self.state;
        Ok(Response::new(
            accounts::sign_in(&self.auth, &s.db, &meta, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_session(
        &self,
        request: Request<pb::RefreshSessionRequest>,
    ) -> Reply<pb::RefreshSessionResponse> {
        let meta = RequestMeta::of(&request);
        self.auth.throttle.check_rate(meta.ip)?;
        let pb::RefreshSessionRequest { refresh_token } = request.into_inner();
        if refresh_token.is_empty() {
            return Err(AppError::invalid("refresh_token", "is required").into());
        }
        let tokens = sessions::refresh(&self.auth, &self.state.db, &refresh_token, &meta).await?;
        Ok(Response::new(pb::RefreshSessionResponse { tokens: Some(tokens) }))
    }

    #[tracing::instrument(skip_all)]
    async fn sign_out(&self, request: Request<pb::SignOutRequest>) -> Reply<pb::SignOutResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?;
        let session = session_of(caller)?;
        sessions::end(
            &self.auth,
            &self.state.db,
            &meta,
            caller.user_id,
            session,
            "sign_out",
        )
        .await?;
        Ok(Response::new(pb::SignOutResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
        request: Request<pb::AuthServiceListSessionsRequest>,
    ) -> Reply<pb::AuthServiceListSessionsResponse> {
        let caller = Caller::of(&request)?;
        let (user_id, current) = (caller.user_id, caller.session_id());
        let pb::AuthServiceListSessionsRequest {
            page_size,
            page_token,
        } = request.into_inner();
        let page = sessions::list(&self.state.db, user_id, current, page_size, &page_token).await?;
        Ok(Response::new(page))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Reply<pb::RevokeSessionResponse> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let id = parse_name("name", &request.get_ref().name, "authSessions")?;
        sessions::end(&self.auth, &self.state.db, &meta, user_id, id, "revoked").await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn change_password(
        &self,
        request: Request<pb::ChangePasswordRequest>,
    ) -> Reply<pb::ChangePasswordResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?;
        let (user_id, session) = (caller.user_id, caller.session_id());
        let s = &self.state;
        accounts::change_password(&self.auth, &s.db, &meta, user_id, session, request.into_inner()).await?;
        Ok(Response::new(pb::ChangePasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_account(
        &self,
        request: Request<pb::DeleteAccountRequest>,
    ) -> Reply<pb::DeleteAccountResponse> {
        let meta = RequestMeta::of(&request);
        let caller = Caller::of(&request)?;
        let s = &self.state;
        let password = &request.get_ref().password;
        super::closing::delete_own(&self.auth, &s.db, &meta, caller, password, s.clock.now()).await?;
        Ok(Response::new(pb::DeleteAccountResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn request_password_reset(
        &self,
        request: Request<pb::RequestPasswordResetRequest>,
    ) -> Reply<pb::RequestPasswordResetResponse> {
        let meta = RequestMeta::of(&request);
        let s = &self.state;
        accounts::request_password_reset(&self.auth, &s.db, &meta, &request.get_ref().email).await?;
        Ok(Response::new(pb::RequestPasswordResetResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn reset_password(
        &self,
        request: Request<pb::ResetPasswordRequest>,
    ) -> Reply<pb::ResetPasswordResponse> {
        let meta = RequestMeta::of(&request);
        let s = &self.state;
        accounts::reset_password(&self.auth, &s.db, &meta, request.into_inner()).await?;
        Ok(Response::new(pb::ResetPasswordResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn send_verification_email(
        &self,
        request: Request<pb::SendVerificationEmailRequest>,
    ) -> Reply<pb::SendVerificationEmailResponse> {
        let user_id = Caller::of(&request)?.user_id;
        accounts::send_verification(&self.auth, &self.state.db, user_id).await?;
        Ok(Response::new(pb::SendVerificationEmailResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn verify_email(&self, request: Request<pb::VerifyEmailRequest>) -> Reply<pb::VerifyEmailResponse> {
        let meta = RequestMeta::of(&request);
        let user = accounts::verify_email(&self.state.db, &meta, &request.get_ref().token).await?;
        Ok(Response::new(pb::VerifyEmailResponse { user: Some(user) }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Reply<pb::CreateApiKeyResponse> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let s = &self.state;
        Ok(Response::new(
            api_keys::create(&self.auth, &s.db, &meta, user_id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Reply<pb::ListApiKeysResponse> {
        let user_id = Caller::of(&request)?.user_id;
        Ok(Response::new(
            api_keys::list(&self.state.db, user_id, request.into_inner()).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn create_stream_ticket(
        &self,
        request: Request<pb::CreateStreamTicketRequest>,
    ) -> Reply<pb::CreateStreamTicketResponse> {
        let caller = Caller::of(&request)?;
        let session = session_of(caller)?;
        let (ticket, expires_at) = tickets::mint(&self.state.db, caller.user_id, session).await?;
        Ok(Response::new(pb::CreateStreamTicketResponse {
            ticket,
            expire_time: Some(crate::timestamps::to_proto(expires_at)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Reply<pb::RevokeApiKeyResponse> {
        let meta = RequestMeta::of(&request);
        let user_id = Caller::of(&request)?.user_id;
        let s = &self.state;
        let key = api_keys::revoke(&self.auth, &s.db, &meta, user_id, &request.get_ref().name).await?;
        Ok(Response::new(pb::RevokeApiKeyResponse { api_key: Some(key) }))
    }
}
