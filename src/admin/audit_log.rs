//! Reading the audit log.

use sea_orm::{ColumnTrait, QueryFilter};
use uuid::Uuid;

use crate::audit::entity as audit;
use crate::db::Db;
use crate::error::{AppResult, Violations};
use crate::names::parse_name;
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
    let mut bad = Violations::default();
    let page = bad.check(PageRequest::<BeforeId>::parse(page_size, &page_token, 50, 500))?;
    let user = |bad: &mut Violations, field: &str, name: &str| {
        if name.is_empty() {
            Ok(Some(None))
        } else {
            bad.check(parse_name(field, name, "users")).map(|id| id.map(Some))
        }
    };
    let actor = user(&mut bad, "actor", &actor)?;
    let subject = user(&mut bad, "subject", &subject)?;
    if action.len() > 100 {
        bad.add("action", "must be at most 100 characters long");
    }
    let mut time = |field: &str, t: &Option<prost_types::Timestamp>| match t {
        None => Ok(Some(None)),
        Some(t) => bad.check(timestamps::from_proto(field, t)).map(|t| t.map(Some)),
    };
    let start_time = time("start_time", &start_time)?;
    let end_time = time("end_time", &end_time)?;
    let (page, actor, subject, start_time, end_time) =
        bad.finish(|| Some((page?, actor?, subject?, start_time?, end_time?)))?;

    let scoped = db.read_as_admin(admin_id).await?;
    let mut query = page.newest_first(scoped.find::<audit::Entity>(), audit::Column::Id);
    if let Some(actor) = actor {
        query = query.filter(audit::Column::ActorId.eq(actor));
    }
    if let Some(subject) = subject {
        query = query.filter(audit::Column::SubjectUserId.eq(subject));
    }
    if !action.is_empty() {
        query = query.filter(audit::Column::Action.eq(action));
    }
    if let Some(start) = start_time {
        query = query.filter(audit::Column::CreatedAt.gte(start));
    }
    if let Some(end) = end_time {
        query = query.filter(audit::Column::CreatedAt.lt(end));
    }
    let (entries, next) = page.page(query.all(scoped.txn()).await?, |last| BeforeId {
        before: last.id,
    });
    Ok(pb::ListAuditLogResponse {
        entries: entries.into_iter().map(pb::AuditEntry::from).collect(),
        next_page_token: PageRequest::token(next.as_ref()),
    })
}
