//! Reading the audit log.

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use crate::audit::entity as audit;
use crate::auth::model::parse_name;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::pagination::{BeforeId, PageRequest};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Entries matching the filters, newest first.
pub async fn list(
    db: &Db,
    admin_id: Uuid,
    request: pb::ListAuditLogRequest,
) -> AppResult<pb::ListAuditLogResponse> {
    let pb::ListAuditLogRequest {
        page_size,
        page_token,
        actor,
        subject,
        action,
        start_time,
        end_time,
    } = request;
    let page = PageRequest::<BeforeId>::parse(page_size, &page_token, 50, 500)?;
    let scoped = db.as_admin(admin_id).await?;
    let mut query = scoped
        .find::<audit::Entity>()
        .order_by_desc(audit::Column::Id)
        .limit(page.size + 1);
    if let Some(cursor) = page.after {
        query = query.filter(audit::Column::Id.lt(cursor.before));
    }
    if !actor.is_empty() {
        query = query.filter(audit::Column::ActorId.eq(parse_name("actor", &actor, "users")?));
    }
    if !subject.is_empty() {
        query = query.filter(audit::Column::SubjectUserId.eq(parse_name("subject", &subject, "users")?));
    }
    if !action.is_empty() {
        if action.len() > 100 {
            return Err(AppError::invalid("action", "must be at most 100 characters long"));
        }
        query = query.filter(audit::Column::Action.eq(action));
    }
    if let Some(start) = &start_time {
        query = query.filter(audit::Column::CreatedAt.gte(timestamps::from_proto("start_time", start)?));
    }
    if let Some(end) = &end_time {
        query = query.filter(audit::Column::CreatedAt.lt(timestamps::from_proto("end_time", end)?));
    }
    let (entries, next) = page.page(query.all(scoped.txn()).await?, |last| BeforeId {
        before: last.id,
    });
    Ok(pb::ListAuditLogResponse {
        entries: entries.into_iter().map(to_proto).collect(),
        next_page_token: PageRequest::token(next.as_ref()),
    })
}

fn to_proto(entry: audit::Model) -> pb::AuditEntry {
    let user = |id: Option<Uuid>| id.map(|id| format!("users/{id}")).unwrap_or_default();
    let details = match entry.details {
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
    pb::AuditEntry {
        name: format!("auditEntries/{}", entry.id),
        actor: user(entry.actor_id),
        subject: user(entry.subject_user_id),
        action: entry.action,
        target: entry.target.unwrap_or_default(),
        ip_address: entry.ip_address.unwrap_or_default(),
        details,
        create_time: Some(timestamps::to_proto(entry.created_at)),
    }
}
