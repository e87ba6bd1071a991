//! Per-user "something changed" signals inside one process, and one for
//! the processing workers when a job is queued.
//!
//! A transaction that changes what a user can watch (an event) asks for a
//! signal with [`super::Scoped::signal_after_commit`]; when it commits, every
//! task waiting on that user's [`Notify`] wakes. Waiters re-read the
//! database, so a signal carries nothing and a missed one only delays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

/// The registry of per-user signals, and the workers' "work was queued".
#[derive(Debug, Default)]
pub struct Signals {
    users: Mutex<HashMap<Uuid, Arc<Notify>>>,
    work: Notify,
}

impl Signals {
    /// The signal that processing work was queued in this process.
    pub fn work(&self) -> &Notify {
        &self.work
    }

    /// The signal of `user_id`, to wait on.
    pub fn of(&self, user_id: Uuid) -> Arc<Notify> {
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() > 10_000 {
            // Forget signals nobody waits on any more.
            users.retain(|_, notify| Arc::strong_count(notify) > 1);
        }
        users.entry(user_id).or_default().clone()
    }

    /// Wakes every waiter of every user.
    pub fn wake_all(&self) {
        let all: Vec<Arc<Notify>> = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        for notify in all {
            notify.notify_waiters();
        }
    }

    /// Wakes everyone waiting on `user_id`.
    pub fn wake(&self, user_id: Uuid) {
        let notify = self
            .users
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&user_id)
            .cloned();
        if let Some(notify) = notify {
            notify.notify_waiters();
        }
    }
}
