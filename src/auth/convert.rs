//! Account and key rows to API messages. Each conversion destructures its
//! row, so a new column does not build until it is shown or explicitly left
//! out.

use super::entity::{api_key, session, user};
use crate::pb::v1 as pb;
use crate::timestamps;

/// An account with its profile's display name (which lives in profiles).
impl From<(&user::Model, String)> for pb::User {
    fn from((user, display_name): (&user::Model, String)) -> Self {
        let user::Model {
            id,
            email,
            role,
            email_verified_at,
            plan_id,
            last_sign_in_at,
            created_at,
            // Secret, the plan's anchor, which usage shows, and closing,
            // which hides the account from every read.
            password_hash: _,
            plan_started_at: _,
            deleted_at: _,
            updated_at: _,
        } = user;
        Self {
            name: format!("users/{id}"),
            email: email.clone(),
            email_verified: email_verified_at.is_some(),
            role: pb::Role::from(*role).into(),
            plan: format!("plans/{plan_id}"),
            display_name,
            create_time: Some(timestamps::to_proto(*created_at)),
            last_sign_in_time: timestamps::opt_to_proto(*last_sign_in_at),
        }
    }
}

impl From<&api_key::Model> for pb::ApiKey {
    fn from(key: &api_key::Model) -> Self {
        let api_key::Model {
            id,
            display_name,
            prefix,
            scopes: _,
            expires_at,
            last_used_at,
            revoked_at,
            created_at,
            // The owner is the caller; the hash is secret; the rest is
            // bookkeeping.
            user_id: _,
            key_hash: _,
            request_id: _,
            updated_at: _,
        } = key;
        Self {
            name: format!("apiKeys/{id}"),
            display_name: display_name.clone(),
            prefix: prefix.clone(),
            scopes: key.scope_list(),
            expire_time: timestamps::opt_to_proto(*expires_at),
            create_time: Some(timestamps::to_proto(*created_at)),
            last_use_time: timestamps::opt_to_proto(*last_used_at),
            revoke_time: timestamps::opt_to_proto(*revoked_at),
        }
    }
}

/// A sign-in session, and whether it is the caller's own.
impl From<(session::Model, bool)> for pb::AuthSession {
    fn from((row, current): (session::Model, bool)) -> Self {
        let session::Model {
            id,
            user_agent,
            ip_address,
            last_used_at,
            expires_at,
            created_at,
            // Listed sessions are the caller's and not revoked.
            user_id: _,
            revoked_at: _,
            revoke_reason: _,
            updated_at: _,
        } = row;
        Self {
            name: format!("authSessions/{id}"),
            create_time: Some(timestamps::to_proto(created_at)),
            last_use_time: Some(timestamps::to_proto(last_used_at)),
            expire_time: Some(timestamps::to_proto(expires_at)),
            user_agent,
            ip_address,
            current,
        }
    }
}
