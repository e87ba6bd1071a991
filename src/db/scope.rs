//! Scoped transactions: the one way to read and write user data.
//!
//! [`Db::as_user`] opens a transaction for one user. Queries built through
//! it ([`Scoped::find`], [`Scoped::update_many`], [`Scoped::delete_many`])
//! carry an owner filter in SQL on every backend, and rows written through
//! it ([`Scoped::insert`], [`Scoped::insert_many`], [`Scoped::upsert`]) are
//! checked to belong to the scope first. On
//! Postgres the transaction also sets `app.user_id` and `app.role` (local to
//! the transaction, in the same message as its `BEGIN`), and the forced Row
//! Level Security policies of the migrations enforce the same rule in the
//! database, so a query that forgot its filter still sees nothing of anyone
//! else's.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, IntoIden, OnConflict, SimpleExpr, ValueType};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ActiveValue, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    DbBackend, DbErr, DeleteMany, DeleteResult, EntityName, EntityTrait, ExecResult, IdenStatic,
    IntoActiveModel, QueryFilter, QueryResult, QueryTrait, Select, Statement, UpdateMany, UpdateResult,
};
use uuid::Uuid;

use std::sync::{Arc, Mutex};

use super::group::Turn;
use super::pg::PgTxn;
use super::{Db, ScopedOn, Signals};
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

/// A setting of Postgres's for one transaction: its name and value.
pub type Setting = (&'static str, &'static str);

impl Scope {
    /// The Postgres `BEGIN` of a transaction in this scope: with the
    /// settings the Row Level Security policies read, and `settings`, in
    /// one message. A message of several statements takes no parameters,
    /// so the values are literals: a UUID's digits and hyphens, a fixed
    /// role name and the constants of `settings`, which need no escaping.
    fn postgres_begin(self, settings: &[Setting]) -> String {
        let (user_id, role) = match self {
            Self::User(id) => (id.to_string(), "user"),
            Self::Admin(id) => (id.to_string(), "admin"),
            Self::Service => (String::new(), "service"),
        };
        let mut begin = format!(
            "BEGIN; SELECT set_config('app.user_id', '{user_id}', true), set_config('app.role', '{role}', true)"
        );
        for (name, value) in settings {
            begin.push_str(&format!(", set_config('{name}', '{value}', true)"));
        }
        begin
    }
}

/// An entity holding one user's rows.
pub trait Owned: EntityTrait {
    /// The column with the owning user's id.
    fn owner_column() -> Self::Column;

    /// The column holding the time of the row's last change, which every
    /// update through [`Scoped::update_many`] sets; None if it has none.
    fn updated_at_column() -> Option<Self::Column>;
}

/// A row whose times [`Scoped`] stamps when it writes it.
pub trait Stamped {
    /// Stamps the row about to be inserted (or updated): see [`stamp`].
    fn stamp(&mut self, insert: bool);
}

/// What every entity writes after its model: no navigated relations and,
/// for user data, `owned by Column` names the column holding the owner's id
/// ([`Owned`]). Owned rows have `created_at` and `updated_at`, which every
/// write through [`Scoped`] stamps ([`stamp`]); a table without them says
/// `owned by Column, unstamped`. Use it inside the entity's module.
macro_rules! entity_tail {
    () => {
        /// No relations are navigated.
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
    (owned by $column:ident) => {
        $crate::db::entity_tail!(@owned $column, Some(Column::UpdatedAt));

        impl $crate::db::Stamped for ActiveModel {
            fn stamp(&mut self, insert: bool) {
                $crate::db::stamp(&mut self.created_at, &mut self.updated_at, insert);
            }
        }
    };
    (owned by $column:ident, unstamped) => {
        $crate::db::entity_tail!(@owned $column, None);

        impl $crate::db::Stamped for ActiveModel {
            fn stamp(&mut self, _insert: bool) {}
        }
    };
    (@owned $column:ident, $updated_at:expr) => {
        $crate::db::entity_tail!();

        impl $crate::db::Owned for Entity {
            fn owner_column() -> Column {
                Column::$column
            }

            fn updated_at_column() -> Option<Column> {
                $updated_at
            }
        }
    };
}
pub(crate) use entity_tail;

/// The one place rows get their times: an insert stamps `created_at` and
/// `updated_at` that the caller left unset with now; an update stamps
/// `updated_at` with now unless the caller set it.
pub fn stamp(
    created_at: &mut ActiveValue<DateTime<Utc>>,
    updated_at: &mut ActiveValue<DateTime<Utc>>,
    insert: bool,
) {
    let now = Utc::now();
    if insert && created_at.is_not_set() {
        *created_at = ActiveValue::Set(now);
    }
    if !updated_at.is_set() {
        *updated_at = ActiveValue::Set(now);
    }
}

/// Rows per statement of [`Scoped::insert_many`], well under every
/// backend's limit on bound values.
pub const INSERT_BATCH: usize = 500;

/// An `UPDATE` or `DELETE` from [`Scoped::update_many`] or
/// [`Scoped::delete_many`]: limited to the rows the scope may write, and
/// run in the scope's transaction by `exec`.
#[must_use = "a write does nothing until `exec`"]
#[derive(Debug)]
pub struct ScopedWrite<'a, Q> {
    scoped: &'a Scoped,
    query: Q,
}

impl<Q: QueryFilter> QueryFilter for ScopedWrite<'_, Q> {
    type QueryStatement = Q::QueryStatement;

    fn query(&mut self) -> &mut Self::QueryStatement {
        self.query.query()
    }
}

impl<E: Owned> ScopedWrite<'_, UpdateMany<E>> {
    /// Sets `column` to `value`.
    pub fn col_expr<T: IntoIden>(self, column: T, value: impl Into<SimpleExpr>) -> Self {
        Self {
            query: self.query.col_expr(column, value.into()),
            ..self
        }
    }

    /// Sets `column` to `value` if there is one, else leaves it as it is.
    pub fn col_expr_if_some<T: IntoIden>(self, column: T, value: Option<impl Into<sea_orm::Value>>) -> Self {
        match value {
            Some(value) => self.col_expr(column, Expr::value(value)),
            None => self,
        }
    }

    /// Sets the columns `model` has set.
    pub fn set<A: ActiveModelTrait<Entity = E>>(self, model: A) -> Self {
        Self {
            query: self.query.set(model),
            ..self
        }
    }

    /// Runs the update.
    pub async fn exec(self) -> Result<UpdateResult, DbErr> {
        let txn = self.scoped.txn();
        self.stamped().exec(txn).await
    }

    /// Runs the update and returns the rows as they now are.
    pub async fn exec_with_returning(self) -> Result<Vec<E::Model>, DbErr> {
        let txn = self.scoped.txn();
        self.stamped().exec_with_returning(txn).await
    }

    /// The update, setting `updated_at` to now unless it sets it already.
    fn stamped(self) -> UpdateMany<E> {
        let Some(column) = E::updated_at_column() else {
            return self.query;
        };
        let already = self
            .query
            .as_query()
            .get_values()
            .iter()
            .any(|(set, _)| set.inner() == column.as_str());
        if already {
            self.query
        } else {
            self.query.col_expr(column, Expr::value(Utc::now()))
        }
    }
}

impl<E: EntityTrait> ScopedWrite<'_, DeleteMany<E>> {
    /// Runs the delete.
    pub async fn exec(self) -> Result<DeleteResult, DbErr> {
        self.query.exec(self.scoped.txn()).await
    }
}

/// An open transaction bound to a [`Scope`]. Dropping it rolls back.
#[derive(Debug)]
pub struct Scoped {
    txn: Txn,
    scope: Scope,
    signals: Arc<Signals>,
    /// Users to signal once the transaction commits.
    pending: Mutex<Vec<Uuid>>,
    /// Whether to wake this process's workers once it commits.
    work_queued: std::sync::atomic::AtomicBool,
    /// Whether to wake every user's waiters once it commits.
    everyone: std::sync::atomic::AtomicBool,
}

/// Where a scoped transaction's statements run: what [`Scoped::txn`]
/// gives to run sea-orm's queries on.
#[derive(Debug)]
pub struct Txn(Inner);

#[derive(Debug)]
enum Inner {
    /// Postgres: a transaction whose `BEGIN` set the scope.
    Postgres(PgTxn),
    /// SQLite, reading: a deferred transaction on the reader pool.
    Read(DatabaseTransaction),
    /// SQLite, writing: a turn on the writer connection, committed with
    /// its group.
    Turn(Turn),
}

/// The connection a statement of a [`Txn`] runs on.
enum On<'a> {
    Postgres(&'a PgTxn),
    SeaOrm(&'a DatabaseTransaction),
}

impl Txn {
    fn on(&self) -> On<'_> {
        match &self.0 {
            Inner::Postgres(txn) => On::Postgres(txn),
            Inner::Read(txn) => On::SeaOrm(txn),
            Inner::Turn(turn) => On::SeaOrm(turn.txn()),
        }
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Txn {
    fn get_database_backend(&self) -> DbBackend {
        match self.on() {
            On::Postgres(_) => DbBackend::Postgres,
            On::SeaOrm(txn) => txn.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.on() {
            On::Postgres(txn) => txn.execute(stmt).await,
            On::SeaOrm(txn) => txn.execute_raw(stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self.on() {
            On::Postgres(txn) => txn.execute_unprepared(sql).await,
            On::SeaOrm(txn) => txn.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.on() {
            On::Postgres(txn) => txn.query_one(stmt).await,
            On::SeaOrm(txn) => txn.query_one_raw(stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.on() {
            On::Postgres(txn) => txn.query_all(stmt).await,
            On::SeaOrm(txn) => txn.query_all_raw(stmt).await,
        }
    }
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

    /// A transaction for the platform itself with Postgres `settings` (of
    /// the planner, say) for its length, set with its `BEGIN`; SQLite has
    /// no such settings.
    pub async fn as_service_with(&self, settings: &[Setting]) -> AppResult<Scoped> {
        self.open_scoped(Scope::Service, true, settings).await
    }

    /// A transaction bound to `scope`.
    pub async fn scoped(&self, scope: Scope) -> AppResult<Scoped> {
        self.open_scoped(scope, true, &[]).await
    }

    /// A transaction over one user's data that only reads: see
    /// [`Self::reading`].
    pub async fn read_as_user(&self, user_id: Uuid) -> AppResult<Scoped> {
        self.reading(Scope::User(user_id)).await
    }

    /// A read-only transaction for an admin, across users.
    pub async fn read_as_admin(&self, admin_id: Uuid) -> AppResult<Scoped> {
        self.reading(Scope::Admin(admin_id)).await
    }

    /// A read-only transaction for the platform itself.
    pub async fn read_as_service(&self) -> AppResult<Scoped> {
        self.reading(Scope::Service).await
    }

    /// A transaction bound to `scope` that only reads. On SQLite it runs on
    /// the reader pool, beside the writer rather than queued behind it; a
    /// write through it fails ("attempt to write a readonly database").
    pub async fn reading(&self, scope: Scope) -> AppResult<Scoped> {
        self.open_scoped(scope, false, &[]).await
    }

    /// On Postgres a transaction whose `BEGIN` sets the scope; on SQLite
    /// (the one backend with a writer connection) a turn on the writer to
    /// write, or a read on the reader pool.
    async fn open_scoped(&self, scope: Scope, writes: bool, settings: &[Setting]) -> AppResult<Scoped> {
        let txn = match (&self.scoped, writes) {
            (ScopedOn::Writer(writer), true) => Inner::Turn(writer.begin(&self.conn).await?),
            (ScopedOn::Writer(_), false) => Inner::Read(self.begin_read().await?),
            (ScopedOn::Postgres(pool), _) => {
                Inner::Postgres(PgTxn::begin(pool, &scope.postgres_begin(settings)).await?)
            }
        };
        Ok(Scoped {
            txn: Txn(txn),
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

    /// The transaction: to run reads built with [`Self::find`], and
    /// statements on tables that hold no user data. Writes of user data go
    /// through `insert`, `upsert`, `update_many` and the rest, which check
    /// the owner.
    pub fn txn(&self) -> &Txn {
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
    pub fn update_many<E: Owned>(&self) -> ScopedWrite<'_, UpdateMany<E>> {
        let query = match self.write_owner() {
            Some(id) => E::update_many().filter(E::owner_column().eq(id)),
            None => E::update_many(),
        };
        ScopedWrite { scoped: self, query }
    }

    /// `DELETE` over `E`, limited to rows the scope may write.
    pub fn delete_many<E: Owned>(&self) -> ScopedWrite<'_, DeleteMany<E>> {
        let query = match self.write_owner() {
            Some(id) => E::delete_many().filter(E::owner_column().eq(id)),
            None => E::delete_many(),
        };
        ScopedWrite { scoped: self, query }
    }

    /// Inserts a row after checking that the scope may own it.
    pub async fn insert<A>(&self, mut row: A) -> AppResult<<A::Entity as EntityTrait>::Model>
    where
        A: ActiveModelTrait + ActiveModelBehavior + Stamped + Send,
        A::Entity: Owned,
        <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
    {
        self.check_owner(&row)?;
        row.stamp(true);
        Ok(row.insert(self.txn()).await?)
    }

    /// Inserts rows, in statements of at most [`INSERT_BATCH`] rows, after
    /// checking that the scope may own every one.
    pub async fn insert_many<A>(&self, rows: impl IntoIterator<Item = A>) -> AppResult<()>
    where
        A: ActiveModelTrait + Stamped + Send,
        A::Entity: Owned,
    {
        self.insert_batches(rows, None).await.map(|_| ())
    }

    /// [`Self::insert_many`], skipping rows whose `columns` match a row
    /// already there; returns how many were inserted.
    pub async fn insert_many_or_ignore<A, I>(
        &self,
        rows: impl IntoIterator<Item = A>,
        columns: I,
    ) -> AppResult<u64>
    where
        A: ActiveModelTrait + Stamped + Send,
        A::Entity: Owned,
        I: IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
    {
        let ignore = OnConflict::columns(columns).do_nothing().to_owned();
        self.insert_batches(rows, Some(ignore)).await
    }

    /// Inserts a row unless one with the same `columns` exists, after
    /// checking that the scope may own it; whether it was inserted.
    pub async fn insert_or_ignore<A, I>(&self, row: A, columns: I) -> AppResult<bool>
    where
        A: ActiveModelTrait + Stamped + Send,
        A::Entity: Owned,
        I: IntoIterator<Item = <A::Entity as EntityTrait>::Column>,
    {
        Ok(self.insert_many_or_ignore([row], columns).await? == 1)
    }

    async fn insert_batches<A>(
        &self,
        rows: impl IntoIterator<Item = A>,
        on_conflict: Option<OnConflict>,
    ) -> AppResult<u64>
    where
        A: ActiveModelTrait + Stamped + Send,
        A::Entity: Owned,
    {
        let mut rows: Vec<A> = rows.into_iter().collect();
        for row in &mut rows {
            self.check_owner(row)?;
            row.stamp(true);
        }
        let mut inserted = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let batch: Vec<A> = rows.by_ref().take(INSERT_BATCH).collect();
            let mut insert = A::Entity::insert_many(batch);
            if let Some(on_conflict) = &on_conflict {
                insert = insert.on_conflict(on_conflict.clone());
            }
            inserted += insert.exec_without_returning(self.txn()).await?;
        }
        Ok(inserted)
    }

    /// Inserts a row or, on conflict, runs the update of `on_conflict` (a
    /// `DO UPDATE`; see [`Self::insert_or_ignore`] for `DO NOTHING`) on the
    /// row in its way, after checking that the scope may own the row. The
    /// update touches only a row the scope may write: another user's row in
    /// the way stays as it is, and nothing is written.
    pub async fn upsert<A>(&self, mut row: A, mut on_conflict: OnConflict) -> AppResult<()>
    where
        A: ActiveModelTrait + Stamped + Send,
        A::Entity: Owned,
    {
        self.check_owner(&row)?;
        row.stamp(true);
        if let Some(owner) = self.write_owner() {
            on_conflict.action_and_where(
                Expr::col((A::Entity::default(), <A::Entity as Owned>::owner_column())).eq(owner),
            );
        }
        A::Entity::insert(row)
            .on_conflict(on_conflict)
            .exec_without_returning(self.txn())
            .await?;
        Ok(())
    }

    /// Runs a set-based write over many users' rows (an `INSERT … SELECT`
    /// for every recipient of a notice, say). Only the service scope, which
    /// may write every user's rows, may run one.
    pub async fn execute_across_users(&self, statement: &InsertStatement) -> AppResult<u64> {
        if self.scope != Scope::Service {
            return Err(AppError::internal("writes across users need the service scope"));
        }
        Ok(self.txn().execute(statement).await?.rows_affected())
    }

    /// Refuses a row the scope may not own.
    fn check_owner<A>(&self, row: &A) -> AppResult<()>
    where
        A: ActiveModelTrait,
        A::Entity: Owned,
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
        Ok(())
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
        match self.txn.0 {
            Inner::Postgres(txn) => txn.commit().await?,
            Inner::Read(txn) => txn.commit().await?,
            Inner::Turn(turn) => turn.commit().await?,
        }
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
