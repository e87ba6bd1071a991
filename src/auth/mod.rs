//! Identity: accounts, sign-in sessions, tokens, roles and API keys.
//!
//! [`Auth`] holds what every instance needs to authenticate: the token keys,
//! the [`layer::Authenticator`] behind the auth layer, sign-in throttling and
//! the mailer. The gRPC AuthService lives in [`service`].

pub mod accounts;
pub mod api_keys;
pub mod closing;
pub mod convert;
pub mod entity;
pub mod export;
pub mod keys;
pub mod layer;
pub mod limits;
pub mod mailer;
pub mod model;
pub mod password;
pub mod secret;
pub mod service;
pub mod sessions;
pub mod store;
pub mod throttle;
pub mod tickets;

use std::sync::Arc;

pub use service::AuthApi;

use crate::config::Config;
use crate::db::{Db, Scoped};
use crate::error::AppResult;

/// What becomes of the rest of a person's data when their account closes.
/// Auth reads none of the domains that hold it; `server.rs` plugs in the
/// erasure job that removes it all (`erasure::Closing`).
#[tonic::async_trait]
pub trait Closing: Send + Sync + std::fmt::Debug {
    /// Arranges, in the transaction `scoped` that closes the account of
    /// `user_id`, for everything it owns to be erased.
    async fn closing(&self, scoped: &Scoped, user_id: uuid::Uuid) -> AppResult<()>;
}

/// Authentication state shared by the auth layer and the services.
#[derive(Debug)]
pub struct Auth {
    /// Token settings.
    pub config: crate::config::AuthConfig,
    /// Signing and verification keys.
    pub keys: Arc<keys::KeySet>,
    /// Resolves credentials to callers.
    pub authenticator: Arc<layer::Authenticator>,
    /// Rate limits and lockouts.
    pub throttle: throttle::Throttle,
    /// Delivers verification and reset emails.
    pub mailer: Arc<dyn mailer::Mailer>,
    /// Erases a closed account's data.
    pub closing: Arc<dyn Closing>,
}

impl Auth {
    /// Loads the keys (generating a development key for the default SQLite
    /// setup) and builds the shared state.
    pub fn new(
        config: &Config,
        db: Db,
        mailer: Arc<dyn mailer::Mailer>,
        closing: Arc<dyn Closing>,
    ) -> Result<Self, keys::KeyError> {
        let embedded = config
            .database_url
            .as_ref()
            .is_none_or(|url| url.expose().starts_with("sqlite:"));
        let auth = &config.auth;
        let keys = Arc::new(keys::KeySet::load(
            auth.signing_key.as_ref().map(|key| key.expose()),
            auth.verify_keys.as_deref(),
            &auth.issuer,
            embedded.then_some(config.data_dir.as_path()),
        )?);
        Ok(Self {
            config: auth.clone(),
            authenticator: Arc::new(layer::Authenticator::new(
                keys.clone(),
                db,
                auth.session_recheck,
                auth.failed_auth_per_minute,
                limits::RequestLimits::new(auth.user_limits),
            )),
            keys,
            throttle: throttle::Throttle::new(auth),
            mailer,
            closing,
        })
    }

    /// Sends an email after the change that caused it has committed; a
    /// failure is logged, not returned, since the change stands.
    pub async fn send_mail(&self, mail: mailer::Mail) {
        if let Err(error) = self.mailer.send(mail).await {
            tracing::error!(%error, "could not send an email");
        }
    }
}
