//! API keys: created by a signed-in user, shown once, stored as hashes.

use chrono::Utc;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, QueryFilter};
use uuid::Uuid;

use super::Auth;
use super::entity::api_key;
use super::secret::{self, API_KEY_PREFIX};
use crate::audit::{self, Entry};
use crate::caller::is_known_scope;
use crate::context::RequestMeta;
use crate::db::Db;
use crate::error::{AppError, AppResult, FieldViolation};
use crate::names::parse_name;
use crate::pagination::{BeforeId, PageRequest};
use crate::pb::v1 as pb;
use crate::text::display_name;
use crate::timestamps;

/// Characters of the key kept to recognise it (`dbk_` and 8 more).
const PREFIX_LEN: usize = 12;

/// How long after creation a repeated `CreateApiKey` (same `request_id`)
/// still gets the secret: long enough for a client to retry a lost answer,
/// short enough that "shown once" holds. Later repeats get the key's
/// metadata only.
pub const SECRET_REPLAY_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

/// Creates a key and returns it with its secret, the only time it is shown.
pub async fn create(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    user_id: Uuid,
    request: pb::CreateApiKeyRequest,
) -> AppResult<pb::CreateApiKeyResponse> {
    let pb::CreateApiKeyRequest { api_key, request_id } = request;
    let key = api_key.ok_or_else(|| AppError::invalid("api_key", "is required"))?;
    let mut violations = Vec::new();
    let name = display_name("api_key.display_name", &key.display_name).unwrap_or_else(|e| {
        if let AppError::InvalidArgument(v) = e {
            violations.extend(v);
        }
        String::new()
    });
    if name.is_empty() && violations.is_empty() {
        violations.push(violation("api_key.display_name", "is required"));
    }
    let mut scopes: Vec<String> = Vec::new();
    if key.scopes.is_empty() {
        violations.push(violation(
            "api_key.scopes",
            "must name at least one scope, e.g. meetings:read",
        ));
    }
    for (i, scope) in key.scopes.iter().enumerate() {
        if !is_known_scope(scope) {
            violations.push(violation(
                &format!("api_key.scopes[{i}]"),
                "must be <resource>:read or <resource>:write for a resource such as meetings, uploads, profile",
            ));
        } else if !scopes.contains(scope) {
            scopes.push(scope.clone());
        }
    }
    let now = Utc::now();
    let expires_at = match &key.expire_time {
        None => None,
        Some(ts) => match timestamps::from_proto("api_key.expire_time", ts) {
            Ok(at) if at > now => Some(at),
            _ => {
                violations.push(violation("api_key.expire_time", "must be a time in the future"));
                None
            }
        },
    };
    if request_id.len() > 128 {
        violations.push(violation("request_id", "must be at most 128 characters long"));
    }
    if !violations.is_empty() {
        return Err(AppError::InvalidArgument(violations));
    }

    let scoped = db.as_user(user_id).await?;
    let request_id = (!request_id.is_empty()).then_some(request_id);
    // A retry with the same request id gets the same key: derived, not stored.
    let secret_key = match &request_id {
        Some(id) => secret::derive(
            auth.keys.derivation_key(),
            API_KEY_PREFIX,
            &format!("api-key:{user_id}:{id}"),
        )?,
        None => secret::generate(API_KEY_PREFIX)?,
    };
    if let Some(id) = &request_id {
        let earlier = scoped
            .find::<api_key::Entity>()
            .filter(api_key::Column::RequestId.eq(id.as_str()))
            .one(scoped.txn())
            .await?;
        if let Some(earlier) = earlier {
            if now - earlier.created_at > SECRET_REPLAY_WINDOW {
                // Shown once: past the window a repeat learns only what the
                // key is, never its secret again.
                return Ok(pb::CreateApiKeyResponse {
                    api_key: Some(pb::ApiKey::from(&earlier)),
                    key: String::new(),
                });
            }
            // The signing key (and so the derivation key) may have changed
            // since: never hand out a secret that is not the stored key's.
            if secret::hash(&secret_key) != earlier.key_hash {
                return Err(AppError::AlreadyExists {
                    reason: "API_KEY_REQUEST_REPEATED",
                    message: format!(
                        "{} was created with this request_id and its key cannot be shown again",
                        pb::ApiKey::from(&earlier).name
                    ),
                });
            }
            return Ok(pb::CreateApiKeyResponse {
                api_key: Some(pb::ApiKey::from(&earlier)),
                key: secret_key,
            });
        }
    }
    let row = scoped
        .insert(api_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            display_name: Set(name),
            prefix: Set(secret_key.chars().take(PREFIX_LEN).collect()),
            key_hash: Set(secret::hash(&secret_key)),
            scopes: Set(serde_json::json!(scopes)),
            expires_at: Set(expires_at),
            last_used_at: Set(None),
            revoked_at: Set(None),
            request_id: Set(request_id),
            ..Default::default()
        })
        .await?;
    audit::record(
        &scoped,
        meta,
        Entry::own("auth.api_key_created", user_id)
            .target(format!("apiKeys/{}", row.id))
            .details(serde_json::json!({ "scopes": scopes })),
    )
    .await?;
    scoped.commit().await?;
    Ok(pb::CreateApiKeyResponse {
        api_key: Some(pb::ApiKey::from(&row)),
        key: secret_key,
    })
}

fn violation(field: &str, description: &str) -> FieldViolation {
    FieldViolation {
        field: field.to_owned(),
        description: description.to_owned(),
    }
}

/// The caller's keys, newest first.
pub async fn list(
    db: &Db,
    user_id: Uuid,
    request: pb::ListApiKeysRequest,
) -> AppResult<pb::ListApiKeysResponse> {
    let pb::ListApiKeysRequest {
        page_size,
        page_token,
        show_revoked,
    } = request;
    let page = PageRequest::<BeforeId>::parse(page_size, &page_token, 50, 200)?;
    let scoped = db.read_as_user(user_id).await?;
    let mut query = page.newest_first(scoped.find::<api_key::Entity>(), api_key::Column::Id);
    if !show_revoked {
        query = query.filter(api_key::Column::RevokedAt.is_null()).filter(
            Condition::any()
                .add(api_key::Column::ExpiresAt.is_null())
                .add(api_key::Column::ExpiresAt.gt(Utc::now())),
        );
    }
    let (keys, next) = page.page(query.all(scoped.txn()).await?, |last| BeforeId {
        before: last.id,
    });
    Ok(pb::ListApiKeysResponse {
        api_keys: keys.iter().map(pb::ApiKey::from).collect(),
        next_page_token: PageRequest::token(next.as_ref()),
    })
}

/// Revokes one of the caller's keys (revoking twice is harmless).
pub async fn revoke(
    auth: &Auth,
    db: &Db,
    meta: &RequestMeta,
    user_id: Uuid,
    name: &str,
) -> AppResult<pb::ApiKey> {
    let id = parse_name("name", name, "apiKeys")?;
    let scoped = db.as_user(user_id).await?;
    let find = || {
        scoped
            .find::<api_key::Entity>()
            .filter(api_key::Column::Id.eq(id))
            .one(scoped.txn())
    };
    let key = find().await?.ok_or_else(|| AppError::not_found("api key"))?;
    if key.revoked_at.is_none() {
        let now = Utc::now();
        scoped
            .update_many::<api_key::Entity>()
            .col_expr(api_key::Column::RevokedAt, Expr::value(now))
            .filter(api_key::Column::Id.eq(id))
            .exec()
            .await?;
        audit::record(
            &scoped,
            meta,
            Entry::own("auth.api_key_revoked", user_id).target(format!("apiKeys/{id}")),
        )
        .await?;
    }
    let key = find().await?.ok_or_else(|| AppError::not_found("api key"))?;
    scoped.commit().await?;
    auth.authenticator.forget_api_key(id);
    Ok(pb::ApiKey::from(&key))
}
