//! A person's data export: each domain contributes a [`Part`] (its records
//! for one person, a page at a time), and [`records`] reads the parts in
//! order only as fast as the client takes them, so memory holds one page
//! however large the account. `server.rs` lists the parts; ProgressService
//! streams them.

use std::collections::VecDeque;
use std::sync::Arc;

use futures::Stream;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

use crate::db::{Db, Scoped};
use crate::error::AppResult;
use crate::pb::v1 as pb;

pub use crate::pb::v1::export_data_response::Record;

/// One page of a part: its records, and the id to continue after (None:
/// the part is done).
pub type Page = (Vec<Record>, Option<Uuid>);

/// One domain's records of a person.
#[tonic::async_trait]
pub trait Part: Send + Sync + std::fmt::Debug {
    /// The kinds of record it sends (the `record` field names), in order.
    fn kinds(&self) -> &'static [&'static str];

    /// Adds what it knows to the manifest (the account, for auth).
    async fn describe(
        &self,
        _scoped: &Scoped,
        _user_id: Uuid,
        _manifest: &mut pb::ExportManifest,
    ) -> AppResult<()> {
        Ok(())
    }

    /// The records of `user_id` after `after` (None: from the first), in
    /// the scope of one short transaction.
    async fn page(&self, scoped: &Scoped, user_id: Uuid, after: Option<Uuid>) -> AppResult<Page>;
}

/// The export format's version, in the manifest.
pub const FORMAT_VERSION: i32 = 1;

/// The manifest: the account, the time and the kinds of record to come.
pub async fn manifest(
    db: &Db,
    user_id: Uuid,
    parts: &[Arc<dyn Part>],
    now: chrono::DateTime<chrono::Utc>,
) -> AppResult<pb::ExportManifest> {
    let mut manifest = pb::ExportManifest {
        user: None,
        export_time: Some(crate::timestamps::to_proto(now)),
        format_version: FORMAT_VERSION,
        record_kinds: parts
            .iter()
            .flat_map(|part| part.kinds())
            .map(|kind| (*kind).to_owned())
            .collect(),
    };
    let scoped = db.read_as_user(user_id).await?;
    for part in parts {
        part.describe(&scoped, user_id, &mut manifest).await?;
    }
    Ok(manifest)
}

/// Every record of `user_id`, part after part: a page is read when the one
/// before has been taken, each in its own transaction.
pub fn records(
    db: Db,
    user_id: Uuid,
    parts: Arc<[Arc<dyn Part>]>,
) -> impl Stream<Item = AppResult<Record>> + Send {
    struct Reading {
        db: Db,
        user_id: Uuid,
        parts: Arc<[Arc<dyn Part>]>,
        /// The part being read; `parts.len()` when done.
        part: usize,
        after: Option<Uuid>,
        buffered: VecDeque<Record>,
    }
    let reading = Reading {
        db,
        user_id,
        parts,
        part: 0,
        after: None,
        buffered: VecDeque::new(),
    };
    futures::stream::try_unfold(reading, |mut r| async move {
        loop {
            if let Some(record) = r.buffered.pop_front() {
                return Ok(Some((record, r)));
            }
            let Some(part) = r.parts.get(r.part).cloned() else {
                return Ok(None);
            };
            let scoped = r.db.read_as_user(r.user_id).await?;
            let (records, next) = part.page(&scoped, r.user_id, r.after).await?;
            drop(scoped);
            r.buffered.extend(records);
            match next {
                Some(after) => r.after = Some(after),
                None => (r.part, r.after) = (r.part + 1, None),
            }
        }
    })
}

/// A table's time-ordered id column, and how to read it off a row.
pub type IdColumn<E> = (<E as EntityTrait>::Column, fn(&<E as EntityTrait>::Model) -> Uuid);

/// Rows of `query` oldest first by their time-ordered `id`, after `after`,
/// `size` at most, and the id to continue after when more remain.
pub async fn rows_after<E: EntityTrait>(
    scoped: &Scoped,
    query: Select<E>,
    (id, id_of): IdColumn<E>,
    after: Option<Uuid>,
    size: u64,
) -> AppResult<(Vec<E::Model>, Option<Uuid>)> {
    let mut query = query.order_by_asc(id).limit(size + 1);
    if let Some(after) = after {
        query = query.filter(id.gt(after));
    }
    let mut rows = query.all(scoped.txn()).await?;
    let more = rows.len() as u64 > size;
    rows.truncate(usize::try_from(size).unwrap_or(usize::MAX));
    let next = more.then(|| rows.last().map(id_of)).flatten();
    Ok((rows, next))
}
