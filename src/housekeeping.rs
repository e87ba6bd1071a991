//! Periodic work every instance does while it serves: giving back expired
//! usage reservations, expiring idle uploads, finishing the clean-up of
//! ended uploads and removing scratch files that a killed process left,
//! pruning old events, abandoning practice sessions left unfinished, deleting original recordings past their retention,
//! and purging meetings deleted longer ago than the retention.
//! Each task is safe to run on several instances at once.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::error::AppResult;
use crate::shared::Shared;

/// Runs [`run_once`] every `DEBRIEF_HOUSEKEEPING_INTERVAL` until
/// `shutdown`.
pub async fn run(state: Shared, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(state.config.housekeeping_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => run_once(&state, state.clock.now()).await,
        }
    }
}

/// Runs every task once; failures are logged and retried next time.
pub async fn run_once(state: &Shared, now: DateTime<Utc>) {
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
    match crate::uploads::lifecycle::clean_ended(state, now).await {
        Ok(0) => {}
        Ok(cleaned) => tracing::info!(cleaned, "removed the objects of ended uploads"),
        Err(error) => tracing::warn!(%error, "could not clean up ended uploads"),
    }
    match crate::scratch::sweep(&state.config.data_dir.join("tmp")).await {
        0 => {}
        removed => tracing::info!(removed, "removed scratch files of processes that died"),
    }
    let events_cutoff =
        now - chrono::Duration::from_std(state.config.events.retention).unwrap_or(chrono::Duration::days(7));
    match crate::events::store::prune(&state.db, events_cutoff).await {
        Ok(0) => {}
        Ok(pruned) => tracing::info!(pruned, "pruned old events"),
        Err(error) => tracing::warn!(%error, "could not prune old events"),
    }
    match crate::auth::tickets::prune(&state.db, now - chrono::Duration::hours(1)).await {
        Ok(0) => {}
        Ok(pruned) => tracing::debug!(pruned, "pruned old stream tickets"),
        Err(error) => tracing::warn!(%error, "could not prune stream tickets"),
    }
    let abandon_before = now
        - chrono::Duration::from_std(state.config.practice.session_timeout)
            .unwrap_or(chrono::Duration::days(1));
    match crate::practice::sessions::abandon_stale(&state.db, abandon_before, now).await {
        Ok(0) => {}
        Ok(abandoned) => tracing::info!(abandoned, "abandoned practice sessions left unfinished"),
        Err(error) => tracing::warn!(%error, "could not abandon stale practice sessions"),
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
                if let Err(error) = state
                    .storage
                    .delete_prefix(&crate::meetings::store::object_prefix(*id))
                    .await
                {
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
async fn delete_expired_originals(state: &Shared, now: DateTime<Utc>) -> AppResult<usize> {
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
