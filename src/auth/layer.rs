//! The one auth layer: a tower middleware in front of every gRPC service
//! (and so of gRPC-Web, which is translated before it), resolving the
//! bearer token or API key once into a [`Caller`] in the request extensions.
//!
//! Access tokens are verified locally; whether their session (or an API key)
//! is still valid is read from the database and remembered for
//! `DEBRIEF_SESSION_RECHECK`, so a revocation reaches every instance within
//! that time and this instance at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::{BoxFuture, Either};
use sea_orm::{ColumnTrait, QueryFilter};
use tonic::Status;
use uuid::Uuid;

use super::entity::{api_key, session, user};
use super::keys::{KeySet, TokenError};
use super::secret::{self, API_KEY_PREFIX};
use crate::caller::{Caller, Credential};
use crate::db::Db;
use crate::error::{AppError, AppResult};

/// RPCs anyone may call without credentials.
const PUBLIC_RPCS: &[&str] = &[
    "/debrief.v1.AuthService/SignUp",
    "/debrief.v1.AuthService/SignIn",
    "/debrief.v1.AuthService/RefreshSession",
    "/debrief.v1.AuthService/RequestPasswordReset",
    "/debrief.v1.AuthService/ResetPassword",
    "/debrief.v1.AuthService/VerifyEmail",
    "/debrief.v1.UsageService/ListPlans",
];

/// Entries kept before stale ones are pruned.
const CACHE_PRUNE_AT: usize = 10_000;

/// Whether a request to `path` must carry credentials. Health, reflection
/// and `/.well-known/jwks.json` are not debrief RPCs and pass.
pub fn needs_credentials(path: &str) -> bool {
    path.starts_with("/debrief.v1.") && !PUBLIC_RPCS.contains(&path)
}

#[derive(Clone)]
struct CachedKey {
    user_id: Uuid,
    key_id: Uuid,
    scopes: Arc<[String]>,
    role: user::Role,
}

type Cache<K, V> = Mutex<HashMap<K, (Instant, Option<V>)>>;

/// Resolves credentials to callers, with a short-lived validity cache.
pub struct Authenticator {
    keys: Arc<KeySet>,
    db: Db,
    recheck: std::time::Duration,
    /// (User id, session id) → the user's role while that user's session
    /// is valid. Keyed by both, so a token naming someone else's session
    /// can neither use its entry nor spoil it for its owner.
    sessions: Cache<(Uuid, Uuid), user::Role>,
    /// API key hash → the key while it is valid.
    api_keys: Cache<String, CachedKey>,
    /// Failed authentications per address.
    failures: super::throttle::FailureGate,
    /// Calls per user and class of RPC.
    limits: super::limits::RequestLimits,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn unauthenticated(reason: &'static str, message: &str) -> AppError {
    AppError::Unauthenticated {
        reason,
        message: message.to_owned(),
    }
}

impl Authenticator {
    /// An authenticator over the keys and the database.
    pub fn new(
        keys: Arc<KeySet>,
        db: Db,
        recheck: std::time::Duration,
        failures_per_minute: u32,
        limits: super::limits::RequestLimits,
    ) -> Self {
        Self {
            keys,
            db,
            recheck,
            sessions: Mutex::default(),
            api_keys: Mutex::default(),
            failures: super::throttle::FailureGate::new(failures_per_minute),
            limits,
        }
    }

    /// The caller named by the `authorization` header, or by a stream
    /// ticket the HTTP edge took from a streaming GET (when there is no
    /// header).
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        ticket: Option<&super::tickets::StreamTicket>,
    ) -> AppResult<Caller> {
        if let Some(ticket) = ticket
            && !headers.contains_key(http::header::AUTHORIZATION)
        {
            return self.stream_ticket(&ticket.0).await;
        }
        let value = headers.get(http::header::AUTHORIZATION).ok_or_else(|| {
            unauthenticated(
                "CREDENTIALS_MISSING",
                "this call needs credentials: send `authorization: Bearer <token>`",
            )
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| {
                unauthenticated("CREDENTIALS_INVALID", "expected `authorization: Bearer <token>`")
            })?;
        if token.starts_with(API_KEY_PREFIX) {
            self.api_key(token).await
        } else {
            self.access_token(token).await
        }
    }

    async fn access_token(&self, token: &str) -> AppResult<Caller> {
        let claims = self.keys.verify(token).map_err(|e| match e {
            TokenError::Expired => unauthenticated(
                "TOKEN_EXPIRED",
                "the access token has expired; refresh the session",
            ),
            TokenError::Invalid => unauthenticated("TOKEN_INVALID", "the access token is not valid"),
        })?;
        let key = (claims.sub, claims.sid);
        let role = match cached(&self.sessions, &key, self.recheck) {
            Some(role) => role,
            None => {
                let role = self.load_session(claims.sub, claims.sid).await?;
                remember(&self.sessions, key, role);
                role
            }
        };
        let role =
            role.ok_or_else(|| unauthenticated("SESSION_REVOKED", "the session has ended; sign in again"))?;
        Ok(Caller {
            user_id: claims.sub,
            role,
            credential: Credential::Session {
                session_id: claims.sid,
            },
        })
    }

    /// The caller a stream ticket stands for: its session's, while that
    /// session is active.
    async fn stream_ticket(&self, ticket: &str) -> AppResult<Caller> {
        let (user_id, session_id) = super::tickets::redeem(&self.db, ticket).await?.ok_or_else(|| {
            unauthenticated(
                "TICKET_INVALID",
                "the stream ticket is not valid, was already used or has expired; mint a new one",
            )
        })?;
        let role = self
            .load_session(user_id, session_id)
            .await?
            .ok_or_else(|| unauthenticated("SESSION_REVOKED", "the session has ended; sign in again"))?;
        Ok(Caller {
            user_id,
            role,
            credential: Credential::Session { session_id },
        })
    }

    /// The user's current role if the session is active.
    async fn load_session(&self, user_id: Uuid, session_id: Uuid) -> AppResult<Option<user::Role>> {
        let scoped = self.db.read_as_user(user_id).await?;
        let now = chrono::Utc::now();
        let active = scoped
            .find::<session::Entity>()
            .filter(session::Column::Id.eq(session_id))
            .filter(session::Column::UserId.eq(user_id))
            .one(scoped.txn())
            .await?
            .is_some_and(|s| s.is_active(now));
        if !active {
            return Ok(None);
        }
        let user = scoped
            .find::<user::Entity>()
            .filter(user::Column::Id.eq(user_id))
            .one(scoped.txn())
            .await?;
        Ok(user.map(|u| u.role))
    }

    async fn api_key(&self, key: &str) -> AppResult<Caller> {
        let hash = secret::hash(key);
        let found = match cached(&self.api_keys, &hash, self.recheck) {
            Some(found) => found,
            None => {
                let found = self.load_api_key(&hash).await?;
                remember(&self.api_keys, hash, found.clone());
                found
            }
        };
        let key = found.ok_or_else(|| unauthenticated("API_KEY_INVALID", "the API key is not valid"))?;
        Ok(Caller {
            user_id: key.user_id,
            role: key.role,
            credential: Credential::ApiKey {
                key_id: key.key_id,
                scopes: key.scopes,
            },
        })
    }

    async fn load_api_key(&self, hash: &str) -> AppResult<Option<CachedKey>> {
        // The key is all we know: look it up across users, then touch only
        // its own row.
        let scoped = self.db.as_service().await?;
        let now = chrono::Utc::now();
        let Some(key) = scoped
            .find::<api_key::Entity>()
            .filter(api_key::Column::KeyHash.eq(hash))
            .one(scoped.txn())
            .await?
            .filter(|k| k.is_active(now))
        else {
            return Ok(None);
        };
        let Some(user) = scoped
            .find::<user::Entity>()
            .filter(user::Column::Id.eq(key.user_id))
            .one(scoped.txn())
            .await?
        else {
            return Ok(None);
        };
        if key
            .last_used_at
            .is_none_or(|at| now - at > chrono::Duration::minutes(1))
        {
            scoped
                .update_many::<api_key::Entity>()
                .col_expr(api_key::Column::LastUsedAt, sea_orm::sea_query::Expr::value(now))
                .filter(api_key::Column::Id.eq(key.id))
                .exec()
                .await?;
            scoped.commit().await?;
        }
        Ok(Some(CachedKey {
            user_id: key.user_id,
            key_id: key.id,
            scopes: key.scope_list().into(),
            role: user.role,
        }))
    }

    /// Forgets what is known about these sessions, after revoking them here.
    pub fn forget_sessions(&self, ids: &[Uuid]) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.retain(|(_, session), _| !ids.contains(session));
        }
    }

    /// Forgets an API key, after revoking it here.
    pub fn forget_api_key(&self, key_id: Uuid) {
        if let Ok(mut keys) = self.api_keys.lock() {
            keys.retain(|_, (_, key)| key.as_ref().is_none_or(|k| k.key_id != key_id));
        }
    }

    /// Forgets everything, e.g. after a role change.
    pub fn forget_all(&self) {
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.clear();
        }
        if let Ok(mut keys) = self.api_keys.lock() {
            keys.clear();
        }
    }
}

/// The cached value if it is younger than `max_age`. The outer Option is
/// "known", the inner one "valid".
fn cached<K: std::hash::Hash + Eq, V: Clone>(
    cache: &Cache<K, V>,
    key: &K,
    max_age: std::time::Duration,
) -> Option<Option<V>> {
    let cache = cache.lock().ok()?;
    let (at, value) = cache.get(key)?;
    (at.elapsed() < max_age).then(|| value.clone())
}

fn remember<K: std::hash::Hash + Eq, V>(cache: &Cache<K, V>, key: K, value: Option<V>) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_PRUNE_AT {
            cache.clear();
        }
        cache.insert(key, (Instant::now(), value));
    }
}

/// Adds the [`AuthMiddleware`] to a service.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer resolving callers with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthMiddleware<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthMiddleware {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// Authenticates and authorises each request before the service sees it.
#[derive(Clone, Debug)]
pub struct AuthMiddleware<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

impl<S, B, R> tower::Service<http::Request<B>> for AuthMiddleware<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<S::Future, BoxFuture<'static, Result<Self::Response, Self::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !needs_credentials(request.uri().path()) {
            return Either::Left(self.inner.call(request));
        }
        // The clone that was polled ready serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Either::Right(Box::pin(async move {
            let path = request.uri().path();
            let ip = request
                .extensions()
                .get::<crate::context::ClientIp>()
                .map(|client| client.0);
            let resolved = match auth.failures.check(ip) {
                Err(refused) => Err(refused),
                Ok(()) => match auth
                    .authenticate(
                        request.headers(),
                        request.extensions().get::<super::tickets::StreamTicket>(),
                    )
                    .await
                {
                    // A forged or guessed credential counts against the
                    // address; a missing or expired one does not.
                    Err(AppError::Unauthenticated { reason, message })
                        if matches!(
                            reason,
                            "TOKEN_INVALID" | "API_KEY_INVALID" | "CREDENTIALS_INVALID" | "TICKET_INVALID"
                        ) =>
                    {
                        Err(auth
                            .failures
                            .failed(ip)
                            .err()
                            .unwrap_or(AppError::Unauthenticated { reason, message }))
                    }
                    other => other,
                },
            }
            .and_then(|caller| {
                caller.authorize(path)?;
                auth.limits.check(caller.user_id, path)?;
                Ok(caller)
            });
            match resolved {
                Ok(caller) => {
                    request.extensions_mut().insert(caller);
                    inner.call(request).await
                }
                Err(error) => Ok(Status::from(error).into_http()),
            }
        }))
    }
}
