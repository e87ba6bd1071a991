//! Periodic work every instance does while it serves: giving back expired
//! usage reservations, expiring idle uploads, removing temporary files left
//! by a crash, pruning old events, deleting original recordings past their
//! retention, and purging meetings deleted longer ago than the retention.
//! Each task is safe to run on several instances at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::error::AppResult;
use crate::server::AppState;

/// How often the tasks run.
pub const INTERVAL: Duration = Duration::from_secs(300);

/// Runs [`run_once`] every [`INTERVAL`] until `shutdown`.
pub async fn run(state: AppState, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => run_once(&state, Utc::now()).await,
        }
    }
}

/// Runs every task once; failures are logged and retried next time.
pub async fn run_once(state: &AppState, now: DateTime<Utc>) {
    match crate::usage::ledger::sweep_expired(&state.db, now).await {
        Ok(0) => {}
        Ok(released) => tracing::info!(released, "gave back expired usage reservations"),
        Err(error) => tracing::warn!(%error, "could not sweep expired usage reservations"),
    }
    match crate::uploads::lifecycle::expire_idle(state, now).await {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "expired idle uploads"),
        Err(error) => tracing::warn!(%error, "could not expire idle uploads"),
    }
    remove_stale_temporary_files(&state.config.data_dir.join("tmp")).await;
    let events_cutoff =
        now - chrono::Duration::from_std(state.config.events.retention).unwrap_or(chrono::Duration::days(7));
    match crate::events::store::prune(&state.db, events_cutoff).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "pruned old events"),
        Err(error) => tracing::warn!(%error, "could not prune old events"),
    }
    match delete_expired_originals(state, now).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(deleted, "deleted original recordings past their retention"),
        Err(error) => tracing::warn!(%error, "could not delete expired original recordings"),
    }
    let cutoff = now
        - chrono::Duration::from_std(state.config.deleted_retention).unwrap_or(chrono::Duration::days(30));
    match crate::meetings::store::purge_deleted(&state.db, cutoff).await {
        Ok(purged) if purged.is_empty() => {}
        Ok(purged) => {
            for id in &purged {
                // The original and anything derived from it.
                if let Err(error) = state.storage.delete_prefix(&format!("meetings/{id}/")).await {
                    tracing::warn!(%error, meeting = %id, "could not delete a purged meeting's objects");
                }
            }
            tracing::info!(purged = purged.len(), "purged deleted meetings");
        }
        Err(error) => tracing::warn!(%error, "could not purge deleted meetings"),
    }
}

/// Deletes the original recordings of meetings processed longer ago than
/// the retention setting: the object first, then the reference, so a crash
/// in between only repeats the deletion.
async fn delete_expired_originals(state: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let Some(retention) = state.config.processing.original_retention else {
        return Ok(0);
    };
    let cutoff = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let meetings = crate::meetings::store::with_expired_originals(&state.db, cutoff).await?;
    for meeting in &meetings {
        if let Some(key) = &meeting.original_object {
            state.storage.delete(key).await?;
        }
        crate::meetings::store::forget_original(&state.db, meeting, now).await?;
    }
    Ok(meetings.len())
}

/// Temporary files older than this were left by a process that died while
/// completing an upload or processing a meeting (each takes minutes, at
/// most an hour or two for the longest recordings).
const STALE_TEMPORARY_FILE: Duration = Duration::from_secs(24 * 3600);

/// Removes files in `dir` last changed before [`STALE_TEMPORARY_FILE`].
async fn remove_stale_temporary_files(dir: &std::path::Path) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let stale = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STALE_TEMPORARY_FILE);
        if !stale {
            continue;
        }
        let removed = match entry.file_type().await {
            // A processing run's work directory.
            Ok(kind) if kind.is_dir() => tokio::fs::remove_dir_all(entry.path()).await,
            _ => tokio::fs::remove_file(entry.path()).await,
        };
        if let Err(error) = removed {
            tracing::warn!(%error, path = %entry.path().display(), "could not remove a stale temporary file");
        }
    }
}
