//! What any domain may hold: the configuration, the database, object
//! storage, the shutdown signal and the clock. Nothing domain-specific lives here; each
//! domain's API takes a [`Shared`] plus whatever of other domains it needs,
//! and `server.rs` wires them together.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::storage::Storage;

/// The infrastructure every request handler and background task shares.
#[derive(Clone, Debug)]
pub struct Shared {
    /// The configuration the process started with.
    pub config: Arc<Config>,
    /// The database.
    pub db: Db,
    /// Where recordings are stored.
    pub storage: Storage,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
    /// The time.
    pub clock: crate::clock::Clock,
}
