//! The audit log: who did what to whose account, and from where.
//!
//! Entries are appended in the same transaction as the change they record
//! and never changed (the migrations forbid updates and deletes). They hold
//! ids, actions and request facts, never passwords, tokens or content.

use sea_orm::ActiveValue::Set;
use uuid::Uuid;

use crate::context::RequestMeta;
use crate::db::Scoped;
use crate::error::AppResult;
use crate::pb::v1 as pb;
use crate::timestamps;

/// `audit_log`.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One entry.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// Entry id (time-ordered).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Who acted; None for the system or an unknown caller.
        pub actor_id: Option<Uuid>,
        /// Whose account it concerns.
        pub subject_user_id: Option<Uuid>,
        /// What happened, e.g. `auth.sign_in`.
        pub action: String,
        /// The resource acted on, e.g. `authSessions/{id}`.
        pub target: Option<String>,
        /// The client's IP address.
        pub ip_address: Option<String>,
        /// Further facts (never secrets).
        pub details: Json,
        /// The request's `x-request-id`.
        pub request_id: Option<String>,
        /// When it happened.
        pub created_at: DateTimeUtc,
        /// Equal to `created_at`: entries never change.
        pub updated_at: DateTimeUtc,
    }

    crate::db::entity_tail!(owned by SubjectUserId);
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What happened.
    pub action: &'static str,
    /// Who acted.
    pub actor: Option<Uuid>,
    /// Whose account it concerns.
    pub subject: Option<Uuid>,
    /// The resource acted on.
    pub target: Option<String>,
    /// Further facts.
    pub details: serde_json::Value,
}

impl Entry {
    /// A user acting on their own account.
    pub fn own(action: &'static str, user_id: Uuid) -> Self {
        Self {
            action,
            actor: Some(user_id),
            subject: Some(user_id),
            target: None,
            details: serde_json::json!({}),
        }
    }

    /// Something that happened to a user's account without them acting
    /// (signed out, an unauthenticated request, the system).
    pub fn about(action: &'static str, user_id: Uuid) -> Self {
        Self {
            actor: None,
            ..Self::own(action, user_id)
        }
    }

    /// Names the resource acted on.
    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    /// Adds facts.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// Appends `entry` in the transaction `scoped`.
pub async fn record(scoped: &Scoped, meta: &RequestMeta, entry: Entry) -> AppResult<()> {
    let Entry {
        action,
        actor,
        subject,
        target,
        details,
    } = entry;
    scoped
        .insert(entity::ActiveModel {
            id: Set(Uuid::now_v7()),
            actor_id: Set(actor),
            subject_user_id: Set(subject),
            action: Set(action.to_owned()),
            target: Set(target),
            ip_address: Set(meta.ip.map(|ip| ip.to_string())),
            details: Set(details),
            request_id: Set(meta.request_id.clone()),
            ..Default::default()
        })
        .await?;
    Ok(())
}

impl From<entity::Model> for pb::AuditEntry {
    fn from(entry: entity::Model) -> Self {
        let entity::Model {
            id,
            actor_id,
            subject_user_id,
            action,
            target,
            ip_address,
            details,
            // For operators reading logs, not for the API.
            request_id: _,
            created_at,
            updated_at: _,
        } = entry;
        let user = |id: Option<Uuid>| id.map(|id| format!("users/{id}")).unwrap_or_default();
        let details = match details {
            serde_json::Value::Object(map) => map
                .into_iter()
                .map(|(key, value)| {
                    let value = match value {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, value)
                })
                .collect(),
            _ => Default::default(),
        };
        Self {
            name: format!("auditEntries/{id}"),
            actor: user(actor_id),
            subject: user(subject_user_id),
            action,
            target: target.unwrap_or_default(),
            ip_address: ip_address.unwrap_or_default(),
            details,
            create_time: Some(timestamps::to_proto(created_at)),
        }
    }
}

/// The export's audit entries about the person, oldest first.
#[derive(Debug)]
pub struct Exported;

#[tonic::async_trait]
impl crate::export::Part for Exported {
    fn kinds(&self) -> &'static [&'static str] {
        &["audit_entry"]
    }

    async fn page(
        &self,
        scoped: &Scoped,
        _user_id: Uuid,
        after: Option<Uuid>,
    ) -> AppResult<crate::export::Page> {
        let (rows, next) = crate::export::rows_after(
            scoped,
            scoped.find::<entity::Entity>(),
            (entity::Column::Id, |row| row.id),
            after,
            200,
        )
        .await?;
        let records = rows
            .into_iter()
            .map(|row| crate::export::Record::AuditEntry(pb::AuditEntry::from(row)))
            .collect();
        Ok((records, next))
    }
}
