//! Live event streams: the backlog after the client's last id, then live
//! events, with heartbeats; ended with a status carrying the resume id when
//! the client is too slow or the server shuts down.
//!
//! A producer task reads the log and fills a bounded channel. It waits on
//! the user's signal (woken after a publishing transaction commits, here or
//! through Postgres NOTIFY) but also re-reads at every heartbeat, so a lost
//! wake-up only delays an event. Reading is always "after the last id sent",
//! so switching from backlog to live can neither skip nor repeat an event.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store::{self, Filter};
use crate::config::EventsConfig;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::pb::v1 as pb;
use crate::timestamps;

/// Events buffered per stream before the client counts as slow.
const BUFFER: usize = 256;
/// Events read from the log at once.
const PAGE: u64 = 500;

/// A message of a stream: an event or a heartbeat.
pub trait Frame: Send + 'static {
    /// Wraps an event.
    fn event(event: pb::Event) -> Self;
    /// Wraps a heartbeat.
    fn heartbeat(heartbeat: pb::Heartbeat) -> Self;
    /// The event's id, if this is one.
    fn event_id(&self) -> Option<i64>;
}

impl Frame for pb::SubscribeResponse {
    fn event(event: pb::Event) -> Self {
        Self {
            kind: Some(pb::subscribe_response::Kind::Event(event)),
        }
    }
    fn heartbeat(heartbeat: pb::Heartbeat) -> Self {
        Self {
            kind: Some(pb::subscribe_response::Kind::Heartbeat(heartbeat)),
        }
    }
    fn event_id(&self) -> Option<i64> {
        match &self.kind {
            Some(pb::subscribe_response::Kind::Event(e)) => Some(e.id),
            _ => None,
        }
    }
}

impl Frame for pb::WatchMeetingResponse {
    fn event(event: pb::Event) -> Self {
        Self {
            kind: Some(pb::watch_meeting_response::Kind::Event(event)),
        }
    }
    fn heartbeat(heartbeat: pb::Heartbeat) -> Self {
        Self {
            kind: Some(pb::watch_meeting_response::Kind::Heartbeat(heartbeat)),
        }
    }
    fn event_id(&self) -> Option<i64> {
        match &self.kind {
            Some(pb::watch_meeting_response::Kind::Event(e)) => Some(e.id),
            _ => None,
        }
    }
}

/// State a stream shows besides events (a meeting on `WatchMeeting`),
/// sent again after the events of each change to it.
#[tonic::async_trait]
pub trait Watched<T>: Send + 'static {
    /// A frame with the state if it changed since the last one sent. An
    /// error ends the stream: NOT_FOUND once the state is gone (deleted).
    async fn changed(&mut self, db: &Db) -> AppResult<Option<T>>;
}

/// Why a stream was ended by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The client did not take events fast enough.
    TooSlow,
    /// The server is shutting down.
    Shutdown,
    /// Reading the log failed.
    Failed,
    /// What the stream watches no longer exists.
    Gone(&'static str),
}

impl Stop {
    fn error(self, last_event_id: i64) -> AppError {
        let metadata = HashMap::from([("last_event_id".to_owned(), last_event_id.to_string())]);
        match self {
            Self::Gone(resource) => AppError::not_found(resource),
            Self::TooSlow => AppError::Aborted {
                reason: "STREAM_TOO_SLOW",
                message: format!(
                    "the stream fell behind and was ended; subscribe again with after_event_id {last_event_id}"
                ),
                metadata,
            },
            Self::Shutdown => AppError::Unavailable {
                reason: "SERVER_SHUTTING_DOWN",
                retry_after: Some(Duration::from_secs(1)),
                message: format!(
                    "the server is shutting down; subscribe again with after_event_id {last_event_id}"
                ),
                metadata,
            },
            Self::Failed => AppError::Unavailable {
                reason: "EVENTS_UNAVAILABLE",
                retry_after: Some(Duration::from_secs(5)),
                message: format!(
                    "events cannot be read now; subscribe again with after_event_id {last_event_id}"
                ),
                metadata,
            },
        }
    }
}

/// The open streams of this instance, per user, and what bounds them.
#[derive(Debug)]
pub struct Streams {
    open: Mutex<HashMap<Uuid, usize>>,
    config: EventsConfig,
    db: Db,
    shutdown: CancellationToken,
}

/// Holds one of a user's stream slots until dropped.
#[derive(Debug)]
pub struct Slot {
    streams: Arc<Streams>,
    user_id: Uuid,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user_id);
            }
        }
    }
}

impl Streams {
    /// The registry over `db`; streams end when `shutdown` is cancelled.
    pub fn new(db: Db, config: EventsConfig, shutdown: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            open: Mutex::default(),
            config,
            db,
            shutdown,
        })
    }

    /// Streams open on this instance.
    pub fn open_count(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).values().sum()
    }

    /// Takes a stream slot of `user_id`, or refuses the newest stream.
    pub fn open(self: &Arc<Self>, user_id: Uuid) -> AppResult<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user_id).or_default();
        if *count >= self.config.max_streams_per_user {
            return Err(AppError::RateLimited {
                retry_after: Duration::from_secs(5),
                message: format!(
                    "at most {} event streams may be open at once; close one first",
                    self.config.max_streams_per_user
                ),
            });
        }
        *count += 1;
        Ok(Slot {
            streams: self.clone(),
            user_id,
        })
    }

    /// Starts streaming `user_id`'s events after `after` (matching
    /// `filter`), preceded by `first` frames, with `watched` sent again
    /// whenever it changes.
    pub fn stream<T: Frame>(
        self: &Arc<Self>,
        slot: Slot,
        after: i64,
        filter: Filter,
        first: Vec<T>,
        mut watched: Option<Box<dyn Watched<T>>>,
    ) -> impl Stream<Item = Result<T, tonic::Status>> + Send + 'static {
        let (tx, rx) = mpsc::channel(BUFFER);
        let (stop_tx, stop_rx) = watch::channel(None);
        let streams = self.clone();
        tokio::spawn(async move {
            for frame in first {
                if tx.send(frame).await.is_err() {
                    return;
                }
            }
            let produced = streams
                .produce(slot.user_id, after, &filter, &tx, watched.as_deref_mut())
                .await;
            if let Some(stop) = produced {
                let _ = stop_tx.send(Some(stop));
            }
            drop(slot);
        });
        deliver(rx, stop_rx, after)
    }

    /// Fills the channel until the client leaves or the stream must stop.
    async fn produce<T: Frame>(
        &self,
        user_id: Uuid,
        mut last: i64,
        filter: &Filter,
        tx: &mpsc::Sender<T>,
        mut watched: Option<&mut (dyn Watched<T> + 'static)>,
    ) -> Option<Stop> {
        let signal = self.db.signals().of(user_id);
        let send = |frame: T| tokio::time::timeout(self.config.slow_timeout, tx.send(frame));
        // The watched state to send once the events before it are out.
        let mut pending: Option<T> = None;
        loop {
            let notified = signal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            loop {
                // The watched state is read before the events, and sent only
                // once a read of the events after it finds nothing new: every
                // change it shows committed with its events, which that read
                // would have found, so the state always follows the events
                // of its change. (A newer state read meanwhile replaces it:
                // changes faster than the stream reads arrive as the latest.)
                if let Some(watched) = watched.as_deref_mut() {
                    match watched.changed(&self.db).await {
                        Ok(None) => {}
                        Ok(Some(frame)) => pending = Some(frame),
                        Err(AppError::NotFound { resource }) => return Some(Stop::Gone(resource)),
                        Err(error) => {
                            tracing::warn!(%error, "could not read what a stream watches");
                            return Some(Stop::Failed);
                        }
                    }
                }
                let rows = match store::after(&self.db, user_id, last, filter, PAGE).await {
                    Ok(rows) => rows,
                    Err(error) => {
                        tracing::warn!(%error, "could not read events for a stream");
                        return Some(Stop::Failed);
                    }
                };
                let (read, full) = (rows.len(), rows.len() as u64 == PAGE);
                for row in rows {
                    match send(T::event(pb::Event::from(&row))).await {
                        Ok(Ok(())) => last = row.seq,
                        Ok(Err(_)) => return None,
                        Err(_) => return Some(Stop::TooSlow),
                    }
                }
                // Without a watched state a short page means caught up.
                if read == 0 || (watched.is_none() && !full) {
                    break;
                }
            }
            if let Some(frame) = pending.take() {
                match send(frame).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return None,
                    Err(_) => return Some(Stop::TooSlow),
                }
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(self.config.heartbeat) => {
                    let beat = pb::Heartbeat {
                        time: Some(timestamps::to_proto(chrono::Utc::now())),
                        last_event_id: last,
                    };
                    match send(T::heartbeat(beat)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return None,
                        Err(_) => return Some(Stop::TooSlow),
                    }
                }
                () = self.shutdown.cancelled() => return Some(Stop::Shutdown),
                () = tx.closed() => return None,
            }
        }
    }
}

/// The stream tonic sends: frames in order, then the stop status (carrying
/// the id of the last event this stream handed out) if the server ended it.
fn deliver<T: Frame>(
    rx: mpsc::Receiver<T>,
    stop: watch::Receiver<Option<Stop>>,
    after: i64,
) -> impl Stream<Item = Result<T, tonic::Status>> + Send + 'static {
    struct State<T> {
        rx: mpsc::Receiver<T>,
        stop: Option<watch::Receiver<Option<Stop>>>,
        last: i64,
        done: bool,
    }
    let state = State {
        rx,
        stop: Some(stop),
        last: after,
        done: false,
    };
    futures::stream::unfold(state, |mut state| async move {
        if state.done {
            return None;
        }
        loop {
            let stopped = match &mut state.stop {
                Some(stop) => {
                    tokio::select! {
                        biased;
                        changed = stop.changed() => Some(changed.is_ok().then(|| *stop.borrow()).flatten()),
                        frame = state.rx.recv() => {
                            let frame = frame?;
                            if let Some(id) = frame.event_id() {
                                state.last = id;
                            }
                            return Some((Ok(frame), state));
                        }
                    }
                }
                None => {
                    let frame = state.rx.recv().await?;
                    if let Some(id) = frame.event_id() {
                        state.last = id;
                    }
                    return Some((Ok(frame), state));
                }
            };
            match stopped {
                Some(Some(stop)) => {
                    state.done = true;
                    let last = state.last;
                    return Some((Err(stop.error(last).into()), state));
                }
                // The producer ended without a stop: deliver what is left.
                _ => state.stop = None,
            }
        }
    })
}
