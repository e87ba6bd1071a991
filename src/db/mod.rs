//! The database: connection, migrations and the scoped-transaction API
//! through which every read and write of user data goes.
//!
//! SQLite (a file in the data directory) is the embedded default; a
//! `postgres://` `DATABASE_URL` selects Postgres. Both get the same schema
//! from the `migration` crate.

mod scope;
mod signals;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

pub use scope::{Owned, Scope, Scoped};
pub use signals::Signals;

use crate::config::{Config, ConfigError};

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    signals: std::sync::Arc<Signals>,
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The configuration names no usable database.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database refused or failed.
    #[error("cannot open the database: {0}")]
    Database(#[from] DbErr),
    /// The data directory cannot be created.
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: String,
        /// The failure.
        source: std::io::Error,
    },
    /// The Postgres role would bypass Row Level Security.
    #[error(
        "DATABASE_URL connects as role {role:?}, which is a superuser or has BYPASSRLS, so row \
         level security would not apply to it. Connect as an ordinary role that owns the \
         database (see the README, \"Running on Postgres\")"
    )]
    BypassesRls {
        /// The role connected as.
        role: String,
    },
}

impl Db {
    /// Opens the database named by the configuration.
    pub async fn connect(config: &Config) -> Result<Self, ConnectError> {
        let url = config.database_url();
        let url = url.expose();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            DbBackend::Postgres
        } else if url.starts_with("sqlite:") {
            DbBackend::Sqlite
        } else {
            // The URL may hold a password: name the variable, not the value.
            return Err(ConfigError {
                var: "DATABASE_URL",
                reason: "expected a postgres:// or sqlite: URL".into(),
            }
            .into());
        };
        if backend == DbBackend::Sqlite && config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| ConnectError::DataDir {
                path: config.data_dir.display().to_string(),
                source,
            })?;
        }

        let mut options = ConnectOptions::new(url);
        options
            .sqlx_logging(false)
            .connect_timeout(config.db_acquire_timeout)
            .acquire_timeout(config.db_acquire_timeout);
        match backend {
            DbBackend::Postgres => {
                options.max_connections(config.db_max_connections.unwrap_or(10));
            }
            _ => {
                // One connection serialises writers, which SQLite needs
                // anyway; WAL lets readers in other processes go on.
                options.max_connections(config.db_max_connections.unwrap_or(1));
                options.map_sqlx_sqlite_opts(|opts| {
                    opts.journal_mode(SqliteJournalMode::Wal)
                        .foreign_keys(true)
                        .busy_timeout(Duration::from_secs(5))
                });
            }
        }
        let conn = Database::connect(options).await?;
        let db = Self {
            conn,
            signals: Default::default(),
        };
        if backend == DbBackend::Postgres {
            db.refuse_rls_bypass().await?;
        }
        Ok(db)
    }

    /// Opens a transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then
    /// writes cannot wait for a lock another process holds (SQLite answers
    /// SQLITE_BUSY at once, since its snapshot would be stale), while
    /// `BEGIN IMMEDIATE` waits for it up to the busy timeout. Within this
    /// process transactions queue for the pool's connection anyway.
    pub(crate) async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        match self.backend() {
            DbBackend::Sqlite => {
                self.conn
                    .begin_with_options(TransactionOptions {
                        sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                        ..Default::default()
                    })
                    .await
            }
            _ => self.conn.begin().await,
        }
    }

    /// Brings the schema up to date.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        let txn = self.migration_transaction().await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await
    }

    /// Reverts the newest `steps` migrations.
    pub async fn migrate_down(&self, steps: u32) -> Result<(), DbErr> {
        let txn = self.migration_transaction().await?;
        Migrator::down(&txn, Some(steps)).await?;
        txn.commit().await
    }

    /// Migrations run in one transaction (DDL is transactional on both
    /// backends), so an upgrade applies entirely or not at all. On Postgres
    /// it also holds an advisory lock, so replicas that start together take
    /// turns.
    async fn migration_transaction(&self) -> Result<DatabaseTransaction, DbErr> {
        const MIGRATION_LOCK: i64 = 0x6465_6272_6965_6601; // "debrief" + 1
        let txn = self.begin().await?;
        if self.backend() == DbBackend::Postgres {
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK.into()],
            ))
            .await?;
        }
        Ok(txn)
    }

    /// Every migration with whether it has been applied, oldest first.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, DbErr> {
        Ok(Migrator::get_migration_with_status(&self.conn)
            .await?
            .iter()
            .map(|m| {
                (
                    m.name().to_owned(),
                    m.status() == migration::MigrationStatus::Applied,
                )
            })
            .collect())
    }

    /// Which database this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// The per-user change signals of this process.
    pub fn signals(&self) -> &std::sync::Arc<Signals> {
        &self.signals
    }

    /// The unscoped connection. On Postgres it sees no user data at all
    /// (Row Level Security); use it for health checks and schema work only.
    pub fn unscoped(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    /// Closes every connection.
    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }

    async fn refuse_rls_bypass(&self) -> Result<(), ConnectError> {
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_user::text AS role, rolsuper OR rolbypassrls AS bypass \
                 FROM pg_roles WHERE rolname = current_user",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("the current role is not in pg_roles".into()))?;
        if row.try_get::<bool>("", "bypass")? {
            return Err(ConnectError::BypassesRls {
                role: row.try_get("", "role")?,
            });
        }
        Ok(())
    }
}
