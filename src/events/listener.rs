//! Cross-instance wake-ups on Postgres: one `LISTEN` connection per
//! instance turns each notification (a user id) into a local signal.
//! Streams also re-read at every heartbeat, so a notification lost while
//! the listener reconnects only delays delivery.

use std::time::Duration;

use sea_orm::DbBackend;
use sea_orm::sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::publish::CHANNEL;
use crate::db::Db;

/// Listens until `shutdown` (does nothing on SQLite, where every publisher
/// is in this process).
pub async fn run(db: Db, shutdown: CancellationToken) {
    if db.backend() != DbBackend::Postgres {
        return;
    }
    let pool = db.unscoped().get_postgres_connection_pool().clone();
    loop {
        let listened = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            tracing::debug!("listening for events from other instances");
            loop {
                let notification = listener.recv().await?;
                if let Ok(user_id) = notification.payload().parse::<Uuid>() {
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
