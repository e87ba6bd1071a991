//! Reading the event log.

use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::entity::event;
use super::model::type_name;
use crate::db::{Db, Scoped};
use crate::error::{AppResult, Violations};
use crate::pb::v1 as pb;

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only these types (any when empty).
    pub types: Vec<String>,
    /// Only events of this meeting.
    pub meeting_id: Option<Uuid>,
}

impl Filter {
    /// Validates the API's filter fields, recording what is wrong in `bad`.
    pub fn parse(bad: &mut Violations, types: &[i32], meeting: &str) -> AppResult<Option<Self>> {
        let mut names = Vec::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            match pb::EventType::try_from(*t).ok().and_then(type_name) {
                Some(name) => names.push(name),
                None => bad.add(format!("types[{i}]"), "must be an event type"),
            }
        }
        let meeting_id = if meeting.is_empty() {
            Some(None)
        } else {
            bad.check(crate::names::parse_name("meeting", meeting, "meetings"))?
                .map(Some)
        };
        Ok((names.len() == types.len())
            .then_some(meeting_id)
            .flatten()
            .map(|meeting_id| Self {
                types: names,
                meeting_id,
            }))
    }
}

/// Up to `limit` of `user_id`'s events after `after`, in order.
pub async fn after(
    db: &Db,
    user_id: Uuid,
    after: i64,
    filter: &Filter,
    limit: u64,
) -> AppResult<Vec<event::Model>> {
    let scoped = db.read_as_user(user_id).await?;
    read(&scoped, after, filter, limit).await
}

/// The scope's events after `after`, in order.
pub async fn read(scoped: &Scoped, after: i64, filter: &Filter, limit: u64) -> AppResult<Vec<event::Model>> {
    let mut query = scoped
        .find::<event::Entity>()
        .filter(event::Column::Seq.gt(after))
        .order_by_asc(event::Column::Seq)
        .limit(limit);
    if !filter.types.is_empty() {
        query = query.filter(event::Column::EventType.is_in(filter.types.iter().cloned()));
    }
    if let Some(meeting) = filter.meeting_id {
        query = query.filter(event::Column::MeetingId.eq(meeting));
    }
    Ok(query.all(scoped.txn()).await?)
}

/// The user's newest event number (0 before any).
pub async fn last_id(scoped: &Scoped, user_id: Uuid) -> AppResult<i64> {
    let row = scoped
        .find::<super::entity::sequence::Entity>()
        .filter(super::entity::sequence::Column::UserId.eq(user_id))
        .one(scoped.txn())
        .await?;
    Ok(row.map_or(0, |r| r.last_seq))
}

/// Deletes events older than `cutoff` (the retention sweep).
pub async fn prune(db: &Db, cutoff: chrono::DateTime<chrono::Utc>) -> AppResult<u64> {
    let scoped = db.as_service().await?;
    let deleted = scoped
        .delete_many::<event::Entity>()
        .filter(event::Column::CreatedAt.lt(cutoff))
        .exec()
        .await?;
    scoped.commit().await?;
    Ok(deleted.rows_affected)
}
