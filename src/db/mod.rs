//! The database: connection, migrations and the scoped-transaction API
//! through which every read and write of user data goes.
//!
//! SQLite (a file in the data directory) is the embedded default; a
//! `postgres://` `DATABASE_URL` selects Postgres. Both get the same schema
//! from the `migration` crate.

mod group;
mod pg;
mod scope;
mod signals;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteJournalMode;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};

pub(crate) use scope::entity_tail;
pub use scope::{INSERT_BATCH, Owned, Scope, Scoped, ScopedWrite, Setting, Stamped, Txn, stamp};
pub use signals::Signals;

use crate::config::{Config, ConfigError};

/// Read connections on SQLite unless `DEBRIEF_DB_MAX_CONNECTIONS` says
/// otherwise. On two cores the raw read loop of `debrief-bench --compare`
/// reads as fast with one as with four (README); four keep a long read (an
/// export page, analytics) from holding up the others.
const SQLITE_READERS: u32 = 4;

/// Postgres connections beside those of scoped transactions, for the rest:
/// plans, sign-in throttling, event delivery (one listens), migrations.
const UNSCOPED_POSTGRES_CONNECTIONS: u32 = 4;

/// Makes a SQLite connection plan each statement once, whatever values are
/// bound to it (`SQLITE_DBCONFIG_ENABLE_QPSG`).
///
/// Otherwise SQLite 3.51 plans again on every execution of a statement
/// whose `LIMIT` is a bound value, and every `LIMIT` the query builder
/// writes is (`.one()` reads with `LIMIT ?` = 1): the statement cache then
/// saves nothing for them, and planning again was 7 % of the writer
/// connection's time in the job queue's benchmark. Without statistics
/// (debrief runs no `ANALYZE`) no plan depends on the values anyway.
async fn plan_once_for_any_values(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<(), sea_orm::sqlx::Error> {
    match stable_plans(conn, 1).await? {
        1 => Ok(()),
        _ => Err(sea_orm::sqlx::Error::Protocol(
            "SQLite did not turn on SQLITE_DBCONFIG_ENABLE_QPSG".into(),
        )),
    }
}

/// Sets a connection's `SQLITE_DBCONFIG_ENABLE_QPSG` (`set` 1 or 0) or
/// leaves it (-1); returns the setting after.
async fn stable_plans(
    conn: &mut sea_orm::sqlx::SqliteConnection,
    set: std::ffi::c_int,
) -> Result<std::ffi::c_int, sea_orm::sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle().as_ptr();
    let mut after: std::ffi::c_int = -1;
    // SAFETY: `db` is the open connection the locked handle guards for the
    // length of the call; this option takes an int and a pointer to an int
    // that receives the setting, which lives across the call.
    let rc = unsafe {
        libsqlite3_sys::sqlite3_db_config(
            db,
            libsqlite3_sys::SQLITE_DBCONFIG_ENABLE_QPSG,
            set,
            &mut after as *mut std::ffi::c_int,
        )
    };
    if rc == libsqlite3_sys::SQLITE_OK {
        Ok(after)
    } else {
        Err(sea_orm::sqlx::Error::Protocol(format!(
            "SQLite refused SQLITE_DBCONFIG_ENABLE_QPSG (error {rc})"
        )))
    }
}

/// A handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    /// SQLite: the pool of query-only connections reads run on, beside the
    /// one writer connection `conn` (None on Postgres, whose scoped
    /// transactions have connections of their own, and for an in-memory
    /// database).
    reader: Option<DatabaseConnection>,
    /// Where scoped transactions run.
    scoped: ScopedOn,
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
         level security would not apply to it. Connect as an ordinary role (see the README, \
         \"Running on Postgres\")"
    )]
    BypassesRls {
        /// The role connected as.
        role: String,
    },
    /// The Postgres role owns debrief's tables, so it could turn their Row
    /// Level Security off.
    #[error(
        "DATABASE_URL connects as role {role:?}, which owns the database's tables and so could \
         turn their row level security off. Serve as a role that owns nothing, and run \
         migrations as the owner with DATABASE_MIGRATION_URL (see the README, \"Running on \
         Postgres\")"
    )]
    OwnsTables {
        /// The role connected as.
        role: String,
    },
    /// The schema could not be brought up to date.
    #[error(
        "cannot migrate the database: {0}. On Postgres, migrations run as the role of \
         DATABASE_MIGRATION_URL, the owner of the schema"
    )]
    Migrate(DbErr),
}

/// Where a [`Db`]'s scoped transactions run.
#[derive(Debug, Clone)]
enum ScopedOn {
    /// SQLite: turns on the writer connection `conn`, which commit in
    /// groups (reads go to the reader pool).
    Writer(std::sync::Arc<group::Writer>),
    /// Postgres: connections of their own, each transaction committing on
    /// its own; `conn` keeps a few for the rest (plans, sign-in
    /// throttling, event delivery, migrations).
    Postgres(std::sync::Arc<pg::PgConnections>),
}

impl Db {
    /// Opens the database for serving, with its schema up to date: connects
    /// as the `DATABASE_URL` role and migrates — on Postgres with
    /// `DATABASE_MIGRATION_URL` as the owner of the schema, which then
    /// grants the serving role what it needs and nothing more.
    pub async fn open(config: &Config) -> Result<Self, ConnectError> {
        let db = Self::connect(config).await?;
        match &config.database_migration_url {
            Some(_) if db.backend() == DbBackend::Postgres => {
                let owner = Self::connect_as_owner(config).await?;
                owner.migrate().await.map_err(ConnectError::Migrate)?;
                owner.grant_to(&db.current_role().await?).await?;
                owner.close().await?;
            }
            _ => db.migrate().await.map_err(ConnectError::Migrate)?,
        }
        Ok(db)
    }

    /// Opens the database named by the configuration, for serving: on
    /// Postgres a role that is a superuser, bypasses RLS or owns the tables
    /// is refused.
    pub async fn connect(config: &Config) -> Result<Self, ConnectError> {
        let db = Self::connect_url(config, &config.database_url()).await?;
        if db.backend() == DbBackend::Postgres {
            db.refuse_rls_bypass().await?;
        }
        Ok(db)
    }

    /// Opens the database as the owner of the schema, for migrations:
    /// `DATABASE_MIGRATION_URL` if set, else `DATABASE_URL`.
    pub async fn connect_as_owner(config: &Config) -> Result<Self, ConnectError> {
        let url = config
            .database_migration_url
            .clone()
            .unwrap_or_else(|| config.database_url());
        Self::connect_url(config, &url).await
    }

    /// Grants `role` (the serving role) what it needs on the schema this
    /// connection owns: reading and writing rows, the audit log append-only,
    /// the migration history read-only. Repeated after every migration run,
    /// so new tables are covered.
    pub async fn grant_to(&self, role: &str) -> Result<(), ConnectError> {
        let schema: String = self
            .conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_schema()::text AS schema",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no current schema".into()))?
            .try_get("", "schema")?;
        let (schema, role) = (quote_identifier(&schema), quote_identifier(role));
        // Replicas starting together would update the same catalog rows at
        // once ("tuple concurrently updated"): they take turns under the
        // migration lock.
        let txn = self.migration_transaction().await?;
        txn.execute_unprepared(&format!(
            "GRANT USAGE ON SCHEMA {schema} TO {role};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
                 GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
                 REVOKE UPDATE, DELETE, TRUNCATE ON {schema}.audit_log FROM {role};
                 REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {schema}.seaql_migrations FROM {role};"
        ))
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The role this connection works as (Postgres).
    pub async fn current_role(&self) -> Result<String, ConnectError> {
        Ok(self
            .conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT current_user::text AS role",
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("no current role".into()))?
            .try_get("", "role")?)
    }

    async fn connect_url(config: &Config, url: &crate::config::Secret) -> Result<Self, ConnectError> {
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

        let options = |max_connections: u32| {
            let mut options = ConnectOptions::new(url);
            options
                .sqlx_logging(false)
                .connect_timeout(config.db_acquire_timeout)
                .acquire_timeout(config.db_acquire_timeout)
                .max_connections(max_connections);
            options
        };
        let (conn, reader, scoped) = match backend {
            DbBackend::Postgres => {
                let max = config.db_max_connections.unwrap_or(10);
                let mut options = options(max.min(UNSCOPED_POSTGRES_CONNECTIONS));
                // No liveness round trip on every checkout: a connection in
                // use is known to be alive. One idle for a while is still
                // checked, and one that broke (Postgres restarted) fails its
                // call and is dropped. Scoped transactions, the hot path,
                // run on `PgConnections`, which does the same.
                options.test_before_acquire_if_idle_for(Duration::from_secs(1));
                let conn = Database::connect(options).await?;
                let connect = conn.get_postgres_connection_pool().connect_options();
                let scoped = pg::PgConnections::new((*connect).clone(), max, config.db_acquire_timeout);
                (conn, None, ScopedOn::Postgres(scoped))
            }
            _ => {
                // Writes queue for one connection: SQLite allows one writer
                // at a time, and a queue in the pool is fair where writers
                // retrying on their busy timeouts are not. WAL lets reads on
                // the reader pool (and in other processes) go on meanwhile.
                let sqlite = |options: &mut ConnectOptions, query_only: bool| {
                    options.map_sqlx_sqlite_opts(move |opts| {
                        let opts = opts
                            .journal_mode(SqliteJournalMode::Wal)
                            .foreign_keys(true)
                            .busy_timeout(Duration::from_secs(5));
                        if query_only {
                            opts.pragma("query_only", "ON")
                        } else {
                            opts
                        }
                    });
                    options.map_sqlx_sqlite_pool_opts(|pool| {
                        pool.after_connect(|conn, _| Box::pin(plan_once_for_any_values(conn)))
                    });
                };
                let mut writer = options(1);
                sqlite(&mut writer, false);
                let conn = Database::connect(writer).await?;
                let reader = if url.contains(":memory:") || url.contains("mode=memory") {
                    None
                } else {
                    let mut reader = options(config.db_max_connections.unwrap_or(SQLITE_READERS));
                    sqlite(&mut reader, true);
                    Some(Database::connect(reader).await?)
                };
                (conn, reader, ScopedOn::Writer(Default::default()))
            }
        };
        Ok(Self {
            conn,
            reader,
            scoped,
            signals: Default::default(),
        })
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

    /// Opens a transaction for reads only: on SQLite a deferred one on the
    /// reader pool, whose connections refuse to write (`query_only`), so it
    /// neither waits for nor holds the write lock; its snapshot is taken at
    /// its first read.
    pub(crate) async fn begin_read(&self) -> Result<DatabaseTransaction, DbErr> {
        match &self.reader {
            Some(reader) => reader.begin().await,
            None => self.begin().await,
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

    /// Every migration with whether it has been applied, oldest first. It
    /// only reads the migration history, so the serving role, which may not
    /// create it, can ask too.
    pub async fn migration_status(&self) -> Result<Vec<(String, bool)>, DbErr> {
        let backend = self.backend();
        let exists = match backend {
            DbBackend::Postgres => "SELECT to_regclass('seaql_migrations') IS NOT NULL AS present",
            _ => {
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' \
                  AND name = 'seaql_migrations') AS present"
            }
        };
        let present = self
            .conn
            .query_one_raw(Statement::from_string(backend, exists))
            .await?
            .is_some_and(|row| row.try_get::<bool>("", "present").unwrap_or(false));
        let applied: Vec<String> = if present {
            self.conn
                .query_all_raw(Statement::from_string(
                    backend,
                    "SELECT version FROM seaql_migrations",
                ))
                .await?
                .iter()
                .map(|row| row.try_get::<String>("", "version"))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Migrator::migrations()
            .iter()
            .map(|m| (m.name().to_owned(), applied.iter().any(|a| a == m.name())))
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
        if let Some(reader) = self.reader {
            reader.close().await?;
        }
        if let ScopedOn::Postgres(scoped) = self.scoped {
            scoped.close().await;
        }
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
        let role: String = row.try_get("", "role")?;
        if row.try_get::<bool>("", "bypass")? {
            return Err(ConnectError::BypassesRls { role });
        }
        let owns = self
            .conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT EXISTS (SELECT 1 FROM pg_tables \
                 WHERE schemaname = current_schema() AND tableowner = current_user) AS owns",
            ))
            .await?
            .is_some_and(|row| row.try_get::<bool>("", "owns").unwrap_or(false));
        if owns {
            return Err(ConnectError::OwnsTables { role });
        }
        Ok(())
    }
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every SQLite connection, the writer and each reader, plans a
    /// statement once for any bound values.
    #[tokio::test]
    async fn sqlite_connections_plan_once_for_any_values() {
        let dir = tempfile::tempdir().unwrap();
        let config =
            Config::from_vars([("DEBRIEF_DATA_DIR".to_owned(), dir.path().display().to_string())]).unwrap();
        let db = Db::open(&config).await.unwrap();
        let reader = db.reader.as_ref().expect("a file database has readers");
        for pool in [&db.conn, reader] {
            let mut conn = pool.get_sqlite_connection_pool().acquire().await.unwrap();
            assert_eq!(stable_plans(&mut conn, -1).await.unwrap(), 1);
        }
    }
}
