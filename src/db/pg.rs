//! Postgres transactions that begin with their own statement.
//!
//! sea-orm begins a Postgres transaction with a plain `BEGIN`, so a scoped
//! transaction paid a round trip for `BEGIN` and another for the scope's
//! settings before its first query. [`PgTxn`] sends `BEGIN` and the
//! settings as one message and then runs sea-orm's statements itself, the
//! way sea-orm's own transaction does (same statement cache, same errors).

use std::fmt;
use std::sync::Arc;

use sea_orm::sqlx::{self, PgPool, Postgres};
use sea_orm::{ConnAcquireErr, DbErr, ExecResult, QueryResult, RuntimeErr, Statement};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// An open Postgres transaction. Dropping it rolls back: the driver sends
/// the `ROLLBACK` with the connection's next message.
pub(crate) struct PgTxn {
    txn: Mutex<sqlx::Transaction<'static, Postgres>>,
}

impl fmt::Debug for PgTxn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgTxn").finish_non_exhaustive()
    }
}

impl PgTxn {
    /// Takes a connection from `pool` and sends `begin`: a simple query
    /// (statements separated by `;`, no parameters) that must leave the
    /// connection in a transaction. If any of its statements fails, the
    /// transaction is not open and this fails.
    pub(crate) async fn begin(pool: &PgPool, begin: String) -> Result<Self, DbErr> {
        let txn = pool
            .begin_with(sqlx::AssertSqlSafe(begin))
            .await
            .map_err(|e| match e {
                sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
                sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
                e => DbErr::Conn(runtime(e)),
            })?;
        Ok(Self { txn: Mutex::new(txn) })
    }

    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        self.txn.into_inner().commit().await.map_err(query_err)
    }

    pub(crate) async fn execute(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let mut txn = self.txn.lock().await;
        query(&stmt)
            .execute(&mut **txn)
            .await
            .map(Into::into)
            .map_err(|e| DbErr::Exec(runtime(e)))
    }

    pub(crate) async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut txn = self.txn.lock().await;
        sqlx::Executor::execute(&mut **txn, sqlx::AssertSqlSafe(sql.to_owned()))
            .await
            .map(Into::into)
            .map_err(|e| DbErr::Exec(runtime(e)))
    }

    pub(crate) async fn query_one(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut txn = self.txn.lock().await;
        match query(&stmt).fetch_one(&mut **txn).await {
            Ok(row) => Ok(Some(row.into())),
            Err(sqlx::Error::RowNotFound) => Ok(None),
            Err(e) => Err(query_err(e)),
        }
    }

    pub(crate) async fn query_all(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut txn = self.txn.lock().await;
        query(&stmt)
            .fetch_all(&mut **txn)
            .await
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
