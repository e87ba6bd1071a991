//! Wake-ups for events published by other processes.
//!
//! On Postgres one `LISTEN` connection per instance turns each
//! notification (a user id) into a local signal. On SQLite, where another
//! process on the same file (a `debrief worker`) cannot notify, the newest
//! event id is read every [`SQLITE_WATCH`], and while streams are open the
//! owners of events that appeared meanwhile are woken. Streams also re-read
//! at every heartbeat, so a wake-up lost on the way only delays delivery.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::entity::event;
use super::publish::{CHANNEL, EVERYONE};
use super::stream::Streams;
use crate::db::Db;

/// How often SQLite is checked for events of other processes while streams
/// are open: such an event reaches its streams within this time.
pub const SQLITE_WATCH: Duration = Duration::from_millis(250);

/// Starts waking streams for events of other processes, until `shutdown`.
/// On SQLite the newest event id is read before this returns, so that any
/// event a later stream might wait for is newer than what the watcher has
/// seen.
pub async fn start(db: Db, streams: Arc<Streams>, shutdown: CancellationToken) {
    match db.backend() {
        DbBackend::Postgres => {
            tokio::spawn(listen(db, shutdown));
        }
        DbBackend::Sqlite => {
            let seen = match wake_newer(&db, None, false).await {
                Ok(newest) => newest,
                Err(error) => {
                    tracing::warn!(%error, "could not read the newest event id");
                    None
                }
            };
            tokio::spawn(watch(db, streams, shutdown, seen));
        }
        _ => {}
    }
}

async fn listen(db: Db, shutdown: CancellationToken) {
    let pool = db.unscoped().get_postgres_connection_pool().clone();
    loop {
        let listened = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            tracing::debug!("listening for events from other instances");
            loop {
                let notification = listener.recv().await?;
                if notification.payload() == EVERYONE {
                    db.signals().wake_all();
                } else if let Ok(user_id) = notification.payload().parse::<Uuid>() {
                    db.signals().wake(user_id);
                }
            }
            #[expect(unreachable_code, reason = "gives the async block its error type")]
            Ok::<(), sea_orm::sqlx::Error>(())
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = listened => {
                if let Err(error) = result {
                    tracing::warn!(%error, "event listener lost its connection; reconnecting");
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// SQLite: every [`SQLITE_WATCH`], wakes the owners of events newer than
/// the newest seen before, if this instance has streams open.
async fn watch(db: Db, streams: Arc<Streams>, shutdown: CancellationToken, mut seen: Option<i64>) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(SQLITE_WATCH) => {}
        }
        match wake_newer(&db, seen, streams.open_count() > 0).await {
            Ok(newest) => seen = newest.or(seen),
            Err(error) => tracing::debug!(%error, "could not look for new events"),
        }
    }
}

/// Returns the newest event id and, when `wake` is set, wakes the owners of
/// the events after `seen`. SQLite has no row security to pass and only ids
/// are read, so this reads outside any scope (and so without the write lock
/// a scoped transaction takes on SQLite).
async fn wake_newer(db: &Db, seen: Option<i64>, wake: bool) -> Result<Option<i64>, sea_orm::DbErr> {
    let conn = db.unscoped();
    let newest: Option<i64> = event::Entity::find()
        .select_only()
        .column(event::Column::Id)
        .order_by_desc(event::Column::Id)
        .limit(1)
        .into_tuple()
        .one(conn)
        .await?
        // An empty log: any event that appears is new.
        .or(Some(0));
    if let (true, Some(seen), Some(newest)) = (wake, seen, newest)
        && newest > seen
    {
        let users: Vec<Uuid> = event::Entity::find()
            .select_only()
            .column(event::Column::UserId)
            .distinct()
            .filter(event::Column::Id.gt(seen))
            .filter(event::Column::Id.lte(newest))
            .into_tuple()
            .all(conn)
            .await?;
        for user_id in users {
            db.signals().wake(user_id);
        }
    }
    Ok(newest)
}
