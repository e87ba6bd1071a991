//! Scoped transactions: the one way to read and write user data.
//!
//! [`Db::as_user`] opens a transaction for one user. Queries built through
//! it ([`Scoped::find`], [`Scoped::update_many`], [`Scoped::delete_many`],
//! [`Scoped::insert`]) carry an owner filter in SQL on every backend. On
//! Postgres the transaction also sets `app.user_id` and `app.role` (local to
//! the transaction), and the forced Row Level Security policies of the
//! migrations enforce the same rule in the database, so a query that forgot
//! its filter still sees nothing of anyone else's.

use sea_orm::EntityName;
use sea_orm::sea_query::ValueType;
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, DeleteMany, EntityTrait, IntoActiveModel, QueryFilter, Select, Statement, UpdateMany,
};
use uuid::Uuid;

use std::sync::{Arc, Mutex};

use super::{Db, Signals};
use crate::error::{AppError, AppResult};

/// Whose data a transaction may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One user's own data.
    User(Uuid),
    /// An admin: reads every user's data, writes only their own.
    Admin(Uuid),
    /// The platform itself (workers, sign-in before a user is known): all.
    Service,
}

impl Scope {
    fn settings(self) -> (String, &'static str) {
        match self {
            Self::User(id) => (id.to_string(), "user"),
            Self::Admin(id) => (id.to_string(), "admin"),
            Self::Service => (String::new(), "service"),
        }
    }
}

/// An entity holding one user's rows.
pub trait Owned: EntityTrait {
    /// The column with the owning user's id.
    fn owner_column() -> Self::Column;
}

/// An open transaction bound to a [`Scope`]. Dropping it rolls back.
#[derive(Debug)]
pub struct Scoped {
    txn: DatabaseTransaction,
    scope: Scope,
    signals: Arc<Signals>,
    /// Users to signal once the transaction commits.
    pending: Mutex<Vec<Uuid>>,
    /// Whether to wake this process's workers once it commits.
    work_queued: std::sync::atomic::AtomicBool,
    /// Whether to wake every user's waiters once it commits.
    everyone: std::sync::atomic::AtomicBool,
}

impl Db {
    /// A transaction over one user's data.
    pub async fn as_user(&self, user_id: Uuid) -> AppResult<Scoped> {
        self.scoped(Scope::User(user_id)).await
    }

    /// A transaction for an admin: reads across users. Callers check the
    /// admin role first.
    pub async fn as_admin(&self, admin_id: Uuid) -> AppResult<Scoped> {
        self.scoped(Scope::Admin(admin_id)).await
    }

    /// A transaction for the platform itself, over every user's data.
    pub async fn as_service(&self) -> AppResult<Scoped> {
        self.scoped(Scope::Service).await
    }

    /// A transaction bound to `scope`.
    pub async fn scoped(&self, scope: Scope) -> AppResult<Scoped> {
        let txn = self.begin().await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            let (user_id, role) = scope.settings();
            txn.execute_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT set_config('app.user_id', $1, true), set_config('app.role', $2, true)",
                [user_id.into(), role.into()],
            ))
            .await?;
        }
        Ok(Scoped {
            txn,
            scope,
            signals: self.signals().clone(),
            pending: Mutex::default(),
            work_queued: Default::default(),
            everyone: Default::default(),
        })
    }
}

impl Scoped {
    /// The scope this transaction was opened with.
    pub fn scope(&self) -> Scope {
        self.scope
    }

    /// The transaction, for queries on tables that hold no user data.
    pub fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    /// `SELECT` over `E`, limited to the scope's rows.
    pub fn find<E: Owned>(&self) -> Select<E> {
        match self.scope {
            Scope::User(id) => E::find().filter(E::owner_column().eq(id)),
            Scope::Admin(_) | Scope::Service => E::find(),
        }
    }

    /// `UPDATE` over `E`, limited to rows the scope may write.
    pub fn update_many<E: Owned>(&self) -> UpdateMany<E> {
        match self.write_owner() {
            Some(id) => E::update_many().filter(E::owner_column().eq(id)),
            None => E::update_many(),
        }
    }

    /// `DELETE` over `E`, limited to rows the scope may write.
    pub fn delete_many<E: Owned>(&self) -> DeleteMany<E> {
        match self.write_owner() {
            Some(id) => E::delete_many().filter(E::owner_column().eq(id)),
            None => E::delete_many(),
        }
    }

    /// Inserts a row after checking that the scope may own it.
    pub async fn insert<A>(&self, row: A) -> AppResult<<A::Entity as EntityTrait>::Model>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Send,
        A::Entity: Owned,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        if let Some(scope_owner) = self.write_owner() {
            let owner = match row.get(<A::Entity as Owned>::owner_column()) {
                ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                    <Uuid as ValueType>::try_from(value).ok()
                }
                ActiveValue::NotSet => None,
            };
            if owner != Some(scope_owner) {
                return Err(AppError::internal(format!(
                    "refused to write a row of {} owned by {owner:?} in the scope of {scope_owner}",
                    <A::Entity as Default>::default().table_name()
                )));
            }
        }
        Ok(row.insert(&self.txn).await?)
    }

    /// Wakes the waiters on `user_id`'s signal once this transaction has
    /// committed (never if it rolls back).
    pub fn signal_after_commit(&self, user_id: Uuid) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.contains(&user_id) {
            pending.push(user_id);
        }
    }

    /// Wakes every user's waiters once the transaction has committed.
    pub fn signal_everyone_after_commit(&self) {
        self.everyone.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Wakes this process's idle workers once the transaction has
    /// committed (others find the work when they next look).
    pub fn wake_workers_after_commit(&self) {
        self.work_queued.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Commits the transaction, then sends the signals it asked for.
    pub async fn commit(self) -> AppResult<()> {
        self.txn.commit().await?;
        for user_id in self.pending.into_inner().unwrap_or_else(|e| e.into_inner()) {
            self.signals.wake(user_id);
        }
        if self.everyone.into_inner() {
            self.signals.wake_all();
        }
        if self.work_queued.into_inner() {
            self.signals.work().notify_waiters();
        }
        Ok(())
    }

    fn write_owner(&self) -> Option<Uuid> {
        match self.scope {
            Scope::User(id) | Scope::Admin(id) => Some(id),
            Scope::Service => None,
        }
    }
}
