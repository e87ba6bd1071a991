//! System notices: a message from the operators to one user or to all,
//! delivered as an event in each recipient's log.

use sea_orm::sea_query::Query;
use sea_orm::{ColumnTrait, EntityName, QueryFilter};
use uuid::Uuid;

use crate::audit::{self, Entry};
use crate::auth::entity::user;
use crate::context::RequestMeta;
use crate::db::Db;
use crate::error::{AppError, AppResult, Violations};
use crate::events::model::Payload;
use crate::names::parse_name;
use crate::pb::v1 as pb;
use crate::text::plain_text;

/// Longest title.
const MAX_TITLE: usize = 120;
/// Longest message.
const MAX_MESSAGE: usize = 2000;

/// Sends the notice of `request` (the caller checked the admin role) and
/// returns how many users it reached.
pub async fn send(
    db: &Db,
    meta: &RequestMeta,
    admin_id: Uuid,
    request: pb::SendSystemNoticeRequest,
) -> AppResult<pb::SendSystemNoticeResponse> {
    let pb::SendSystemNoticeRequest { user, title, message } = request;
    let mut bad = Violations::default();
    let recipient = if user.is_empty() {
        Some(None)
    } else {
        bad.check(parse_name("user", &user, "users"))?.map(Some)
    };
    let title = bad.check(plain_text("title", &title, MAX_TITLE))?;
    let message = bad.check(plain_text("message", &message, MAX_MESSAGE))?;
    for (field, value) in [("title", &title), ("message", &message)] {
        if value.as_ref().is_some_and(String::is_empty) {
            bad.add(field, "is required");
        }
    }
    let (recipient, title, message) = bad.finish(|| Some((recipient?, title?, message?)))?;

    // Writing into other users' logs needs the service scope; the admin
    // check was the caller's.
    let scoped = db.as_service().await?;
    let notice = Payload::SystemNotice {
        title: title.clone(),
        message,
    };
    let recipient_count = match recipient {
        Some(user_id) => {
            scoped
                .find::<user::Entity>()
                .filter(user::Column::Id.eq(user_id))
                .one(scoped.txn())
                .await?
                .ok_or_else(|| AppError::not_found("user"))?;
            crate::events::publish(&scoped, user_id, None, notice).await?;
            1
        }
        None => {
            let everyone = Query::select()
                .column(user::Column::Id)
                .from(user::Entity.table_ref())
                .to_owned();
            crate::events::publish::publish_to_all(&scoped, everyone, notice).await?
        }
    };
    let mut entry = Entry {
        action: "admin.system_notice",
        actor: Some(admin_id),
        subject: recipient,
        target: recipient.map(|id| format!("users/{id}")),
        details: serde_json::json!({ "title": title, "recipients": recipient_count }),
    };
    if recipient.is_none() {
        entry.details["everyone"] = serde_json::json!(true);
    }
    audit::record(&scoped, meta, entry).await?;
    scoped.commit().await?;
    Ok(pb::SendSystemNoticeResponse {
        recipient_count: i64::try_from(recipient_count).unwrap_or(i64::MAX),
    })
}
