//! Group commit on SQLite: transactions that write take turns on the one
//! writer connection, in a transaction they share, and that transaction
//! commits once for all of them. The turn that opens the shared transaction
//! writes in it directly (nothing else is in it yet); each later turn
//! writes inside a savepoint of its own.
//!
//! Every commit on SQLite waits for the disk (`synchronous=FULL`), so one
//! transaction per commit caps writes at the disk's flushes per second.
//! Here a transaction's commit releases its savepoint, then waits until the
//! shared transaction has committed: at once when no other writer waits for
//! a turn, else after the writers already waiting have had theirs, by one
//! task queued behind them that commits for the whole group. A
//! caller's `commit` returns only once its writes are on the disk, and an
//! error if the shared commit failed, so nothing reported committed is lost;
//! a rolled-back transaction takes nobody else's writes with it (a later
//! turn rolls back to its savepoint; the opener, alone in the shared
//! transaction so far, rolls that back).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{
    DatabaseConnection, DatabaseTransaction, DbErr, SqliteTransactionMode, TransactionOptions,
    TransactionTrait,
};
use tokio::sync::{Mutex, OwnedMutexGuard, oneshot};

/// Transactions one commit covers at most.
const MAX_GROUP: usize = 64;

/// The writer connection's turns and the transaction they share.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    group: Arc<Mutex<Group>>,
    /// Writers waiting for a turn.
    queued: AtomicUsize,
}

#[derive(Debug, Default)]
struct Group {
    /// The shared transaction, open while a group is.
    shared: Option<DatabaseTransaction>,
    /// Transactions done with their turn, waiting for the shared commit.
    members: Vec<oneshot::Sender<Result<(), String>>>,
    /// Whether a task waits for a turn to commit the open group: members
    /// that leave the commit to it spawn no other.
    committer: bool,
}

/// One transaction's turn on the writer connection: held from its begin to
/// its commit or rollback.
#[derive(Debug)]
pub(crate) struct Turn {
    writer: Arc<Writer>,
    group: Option<OwnedMutexGuard<Group>>,
    /// The turn's savepoint in the shared transaction; None for the turn
    /// that opened it, which writes in it directly: a lone write then costs
    /// `BEGIN`, the statement and `COMMIT`, without a savepoint's two more.
    savepoint: Option<DatabaseTransaction>,
}

impl Writer {
    /// Waits for a turn, then opens the shared transaction with
    /// `BEGIN IMMEDIATE` (which waits for another process's writer up to the
    /// busy timeout) when none is open, else a savepoint in it.
    pub(crate) async fn begin(self: &Arc<Self>, conn: &DatabaseConnection) -> Result<Turn, DbErr> {
        let waited = {
            let _queued = Queued::join(&self.queued);
            self.group.clone().lock_owned().await
        };
        let mut turn = Turn {
            writer: self.clone(),
            group: Some(waited),
            savepoint: None,
        };
        let group = turn.group.as_mut().expect("held until the turn ends");
        match &group.shared {
            Some(shared) => turn.savepoint = Some(shared.begin().await?),
            None => {
                let shared = conn
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..Default::default()
                    })
                    .await?;
                group.shared = Some(shared);
            }
        }
        Ok(turn)
    }
}

/// Counts a writer waiting for its turn until it has it (or gave up).
struct Queued<'a>(&'a AtomicUsize);

impl<'a> Queued<'a> {
    fn join(queued: &'a AtomicUsize) -> Self {
        queued.fetch_add(1, Ordering::SeqCst);
        Self(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Turn {
    /// The transaction the turn's statements run in: its savepoint, or the
    /// shared transaction it opened.
    pub(crate) fn txn(&self) -> &DatabaseTransaction {
        match &self.savepoint {
            Some(savepoint) => savepoint,
            None => self
                .group
                .as_ref()
                .and_then(|group| group.shared.as_ref())
                .expect("a turn without a savepoint opened the shared transaction"),
        }
    }

    /// Ends the turn: releases its savepoint, then waits for the shared
    /// commit and returns its outcome.
    pub(crate) async fn commit(mut self) -> Result<(), DbErr> {
        if let Some(savepoint) = self.savepoint.take()
            && let Err(error) = savepoint.commit().await
        {
            self.abandon();
            return Err(error);
        }
        let mut group = self.group.take().expect("a turn ends once");
        let (done, outcome) = oneshot::channel();
        group.members.push(done);
        // Commit now unless others wait to write: then a task queued behind
        // them commits for everyone before it (one per group: it commits
        // whatever members there are when its turn comes).
        let defer = group.members.len() < MAX_GROUP && self.writer.queued.load(Ordering::SeqCst) > 0;
        if defer {
            let first = !std::mem::replace(&mut group.committer, true);
            drop(group);
            if first {
                spawn_commit(&self.writer.group, None);
            }
        } else {
            spawn_commit(&self.writer.group, Some(group));
        }
        match outcome.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(DbErr::Custom(format!("the commit failed: {e}"))),
            Err(_) => Err(DbErr::Custom("the commit was abandoned".into())),
        }
    }

    /// Ends a turn whose savepoint could not be released: the shared
    /// transaction may hold its writes, so it rolls back, failing everyone
    /// waiting on it.
    fn abandon(mut self) {
        if let Some(mut group) = self.group.take() {
            group.shared = None;
            for member in group.members.drain(..) {
                let _ = member.send(Err("another transaction of the group failed to finish".into()));
            }
        }
    }
}

impl Drop for Turn {
    /// A turn that ends without `commit` rolls back to its savepoint; if
    /// nobody waits on the shared transaction (always so for the turn that
    /// opened it), that rolls back too, giving the connection back.
    fn drop(&mut self) {
        drop(self.savepoint.take());
        if let Some(mut group) = self.group.take()
            && group.members.is_empty()
        {
            group.shared = None;
        }
    }
}

/// Commits the open group and tells its members how it went: at once with
/// the turn `held`, else in the next turn free (a committer's). A task of
/// its own, so a caller that goes away meanwhile neither cancels a commit
/// half done nor leaves the group uncommitted.
fn spawn_commit(turns: &Arc<Mutex<Group>>, held: Option<OwnedMutexGuard<Group>>) {
    let turns = turns.clone();
    tokio::spawn(async move {
        let mut group = match held {
            Some(group) => group,
            None => {
                let mut group = turns.lock_owned().await;
                group.committer = false;
                group
            }
        };
        let outcome = match group.shared.take() {
            Some(shared) => shared.commit().await.map_err(|e| e.to_string()),
            None => return,
        };
        for member in group.members.drain(..) {
            let _ = member.send(outcome.clone());
        }
    });
}
