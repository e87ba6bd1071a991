//! Postgres transactions that begin with their own statement, on
//! connections of their own.
//!
//! sea-orm begins a Postgres transaction with a plain `BEGIN`, so a scoped
//! transaction paid a round trip for `BEGIN` and another for the scope's
//! settings before its first query; and sqlx's pool checks every
//! connection handed back with a round trip of its own (in a task it
//! spawns), which also sends the `ROLLBACK` of a transaction that only
//! read. [`PgTxn`] sends `BEGIN` and the settings as one message, runs
//! sea-orm's statements itself the way sea-orm's own transaction does
//! (same statement cache, same errors), and keeps its connections in
//! [`PgConnections`], which hands a connection back without a round trip:
//! a transaction that ends without a commit is rolled back by the first
//! message of the connection's next transaction (`ROLLBACK; BEGIN; …`), or
//! within [`REAP_EVERY`] by the pool if no transaction comes first.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sea_orm::sqlx::postgres::PgConnectOptions;
use sea_orm::sqlx::{self, ConnectOptions, Connection, PgConnection, Postgres};
use sea_orm::{ConnAcquireErr, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore};

/// How often the pool rolls back transactions left open on idle
/// connections: the longest an unfinished transaction holds its snapshot
/// and locks (which would hold up `VACUUM` and schema changes) once no
/// transaction takes its connection, up to twice this.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// A connection idle this long is checked before use (Postgres may have
/// restarted meanwhile); one in steady use is known to be alive.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// A connection idle this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// The connections of scoped transactions: at most `max` open, the most
/// recently used taken first.
pub(crate) struct PgConnections {
    options: PgConnectOptions,
    acquire_timeout: Duration,
    /// One permit per connection in use; a connection is opened only by a
    /// holder that finds none idle, so in use and idle together stay
    /// within the permits.
    slots: Arc<Semaphore>,
    idle: std::sync::Mutex<Vec<Idle>>,
}

struct Idle {
    conn: PgConnection,
    /// Its last transaction ended without a commit and has not been rolled
    /// back yet.
    open: bool,
    since: Instant,
}

impl fmt::Debug for PgConnections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnections")
            .field("available", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl PgConnections {
    /// A pool of at most `max` connections made with `options`; it rolls
    /// back what idle connections left open until it is dropped.
    pub(crate) fn new(options: PgConnectOptions, max: u32, acquire_timeout: Duration) -> Arc<Self> {
        let pool = Arc::new(Self {
            options,
            acquire_timeout,
            slots: Arc::new(Semaphore::new(max as usize)),
            idle: std::sync::Mutex::default(),
        });
        tokio::spawn(reap(Arc::downgrade(&pool)));
        pool
    }

    /// Closes the idle connections; those in use close when their
    /// transactions end and the pool is gone.
    pub(crate) async fn close(&self) {
        let idle = std::mem::take(&mut *self.lock_idle());
        for idle in idle {
            // A transaction left open ends with the session.
            let _ = idle.conn.close().await;
        }
    }

    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection and the permit it is used under; `true` if its last
    /// transaction is still open.
    async fn take(self: &Arc<Self>) -> Result<(PgConnection, bool, OwnedSemaphorePermit), DbErr> {
        let timeout = || DbErr::ConnectionAcquire(ConnAcquireErr::Timeout);
        let permit = tokio::time::timeout(self.acquire_timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| timeout())?
            .map_err(|_| DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed))?;
        loop {
            let idle = self.lock_idle().pop();
            let Some(mut idle) = idle else {
                let conn = tokio::time::timeout(self.acquire_timeout, self.options.connect())
                    .await
                    .map_err(|_| timeout())?
                    .map_err(|e| DbErr::Conn(runtime(e)))?;
                return Ok((conn, false, permit));
            };
            if idle.since.elapsed() < CHECK_AFTER {
                return Ok((idle.conn, idle.open, permit));
            }
            // Left alone a while: check it (and end what it left open).
            match end(&mut idle.conn, idle.open).await {
                Ok(()) => return Ok((idle.conn, false, permit)),
                Err(error) => tracing::debug!(%error, "dropped a broken idle connection"),
            }
        }
    }

    fn give_back(&self, conn: PgConnection, open: bool) {
        self.lock_idle().push(Idle {
            conn,
            open,
            since: Instant::now(),
        });
    }
}

/// Ends the transaction `conn` left open, or just checks that it answers.
async fn end(conn: &mut PgConnection, open: bool) -> Result<(), sqlx::Error> {
    if open {
        sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await.map(drop)
    } else {
        conn.ping().await
    }
}

/// Every [`REAP_EVERY`], rolls back the transactions left open on
/// connections idle since the last round, and closes connections idle for
/// [`IDLE_TIMEOUT`], until the pool is dropped.
async fn reap(pool: Weak<PgConnections>) {
    let mut every = tokio::time::interval(REAP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        let mut stale = Vec::new();
        {
            let mut idle = pool.lock_idle();
            let mut i = 0;
            while i < idle.len() {
                let idle_for = idle[i].since.elapsed();
                if idle_for >= IDLE_TIMEOUT || (idle[i].open && idle_for >= REAP_EVERY) {
                    // Taken out, it must hold a permit like a connection in
                    // use; with none free the pool is busy and takes it soon.
                    let Ok(permit) = pool.slots.clone().try_acquire_owned() else {
                        break;
                    };
                    stale.push((idle.remove(i), idle_for < IDLE_TIMEOUT, permit));
                    continue;
                }
                i += 1;
            }
        }
        for (mut idle, keep, _permit) in stale {
            if !keep {
                let _ = idle.conn.close().await;
                continue;
            }
            match end(&mut idle.conn, true).await {
                Ok(()) => pool.give_back(idle.conn, false),
                Err(error) => tracing::debug!(%error, "dropped a broken idle connection"),
            }
        }
    }
}

/// An open Postgres transaction. Dropping it rolls back: the connection's
/// next transaction sends the `ROLLBACK` with its `BEGIN` (or the pool
/// sends it within [`REAP_EVERY`]).
pub(crate) struct PgTxn {
    lease: Mutex<Lease>,
}

/// A connection taken from the pool, given back when dropped.
struct Lease {
    conn: Option<PgConnection>,
    /// The transaction has begun and not committed.
    open: bool,
    /// A statement was cut off (its call was dropped) or the connection
    /// failed: its state is unknown, so it is closed, not given back, and
    /// Postgres ends its transaction with the session.
    unusable: bool,
    pool: Arc<PgConnections>,
    _permit: OwnedSemaphorePermit,
}

impl fmt::Debug for PgTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTxn").finish_non_exhaustive()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Given back before the permit is released, so that a transaction
        // waiting for the permit finds it.
        if let Some(conn) = self.conn.take()
            && !self.unusable
        {
            self.pool.give_back(conn, self.open);
        }
    }
}

impl Lease {
    /// The connection, for one call; [`Self::done`] with the call's result
    /// after it. Until then the connection counts as unusable, so that it
    /// is given up if the call is dropped before it finishes.
    fn call(&mut self) -> &mut PgConnection {
        self.unusable = true;
        self.conn
            .as_mut()
            .expect("a lease holds its connection until dropped")
    }

    /// Gives the connection up if the call failed other than with an error
    /// of a statement (the connection broke, Postgres is ending the
    /// session, or the protocol's state is unknown).
    fn done<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.unusable = match result {
            Ok(_) | Err(sqlx::Error::RowNotFound) => false,
            Err(sqlx::Error::Database(e)) => e
                .code()
                .is_some_and(|code| code.starts_with("08") || code.starts_with("57P")),
            Err(_) => true,
        };
    }
}

impl PgTxn {
    /// Takes a connection from `pool` and sends `begin`: a simple query
    /// (statements separated by `;`, no parameters) that must leave the
    /// connection in a transaction, preceded by the `ROLLBACK` of the
    /// connection's last transaction if that was left open. If any of its
    /// statements fails, this fails and the connection is closed.
    pub(crate) async fn begin(pool: &Arc<PgConnections>, begin: &str) -> Result<Self, DbErr> {
        let (conn, left_open, permit) = pool.take().await?;
        let mut lease = Lease {
            conn: Some(conn),
            open: true,
            unusable: false,
            pool: pool.clone(),
            _permit: permit,
        };
        let begin = if left_open {
            format!("ROLLBACK; {begin}")
        } else {
            begin.to_owned()
        };
        // On failure the lease stays unusable (`call`): the connection is
        // closed, whatever state the message left it in.
        sqlx::raw_sql(sqlx::AssertSqlSafe(begin))
            .execute(lease.call())
            .await
            .map_err(|e| DbErr::Conn(runtime(e)))?;
        lease.unusable = false;
        Ok(Self {
            lease: Mutex::new(lease),
        })
    }

    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        let mut lease = self.lease.into_inner();
        // Whatever `COMMIT` answers, Postgres has ended the transaction.
        let committed = sqlx::raw_sql("COMMIT").execute(lease.call()).await;
        lease.done(&committed);
        lease.open = false;
        committed.map(drop).map_err(query_err)
    }

    pub(crate) async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut lease = self.lease.lock().await;
        let result = query(&stmt).execute(lease.call()).await;
        lease.done(&result);
        result.map(Into::into).map_err(|e| DbErr::Exec(runtime(e)))
    }

    pub(crate) async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut lease = self.lease.lock().await;
        let result = sqlx::Executor::execute(lease.call(), sqlx::AssertSqlSafe(sql.to_owned())).await;
        lease.done(&result);
        result.map(Into::into).map_err(|e| DbErr::Exec(runtime(e)))
    }

    pub(crate) async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut lease = self.lease.lock().await;
        let result = query(&stmt).fetch_one(lease.call()).await;
        lease.done(&result);
        match result {
            Ok(row) => Ok(Some(row.into())),
            Err(sqlx::Error::RowNotFound) => Ok(None),
            Err(e) => Err(query_err(e)),
        }
    }

    pub(crate) async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut lease = self.lease.lock().await;
        let result = query(&stmt).fetch_all(lease.call()).await;
        lease.done(&result);
        result
            .map(|rows| rows.into_iter().map(Into::into).collect())
            .map_err(query_err)
    }
}

fn runtime(e: sqlx::Error) -> RuntimeErr {
    RuntimeErr::SqlxError(Arc::new(e))
}

fn query_err(e: sqlx::Error) -> DbErr {
    DbErr::Query(runtime(e))
}

/// `stmt` as a prepared statement (cached by the connection) with its
/// values bound.
fn query(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt
        .values
        .clone()
        .unwrap_or(sea_orm::sea_query::Values(Vec::new()));
    sqlx::query_with(sqlx::AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}
