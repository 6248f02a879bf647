//! Inserts, updates and deletes on tenant tables, narrowed to the scope.
//!
//! Inserts fill the tenant column from the scope; values are [`TenantValues`], so they cannot
//! carry the tenant column themselves. Updates and deletes filter by the scope's tenant first and
//! parenthesise each user predicate; an update's changeset cannot name the tenant column.

use crate::probe::{Paren, ScopeSafe};
use crate::query::{TenantFilter, tenant_filter};
use crate::scope::Brand;
use crate::tx::TenantTx;
use crate::{TenantScope, TenantTable, TenantValues};
use diesel::Insertable;
use diesel::dsl;
use diesel::query_builder::{
    AsChangeset, DeleteStatement, InsertStatement, IntoUpdateTarget, ReturningClause,
    UpdateStatement,
};
use diesel::query_dsl::methods::FilterDsl;
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::return_futures::{GetResult, LoadFuture};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::marker::PhantomData;

/// A write statement built from a scope, branded `'t`; run it with
/// [`execute`](ScopedStatement::execute), or after `returning` with
/// [`get_result`](ScopedStatement::get_result) / [`get_results`](ScopedStatement::get_results).
#[must_use = "a statement does nothing until it runs"]
#[derive(Debug, Clone, Copy)]
pub struct ScopedStatement<'t, S> {
    statement: S,
    brand: Brand<'t>,
}

impl<'t, S> ScopedStatement<'t, S> {
    fn new(statement: S, brand: Brand<'t>) -> Self {
        ScopedStatement { statement, brand }
    }

    /// Runs the statement; returns the number of rows affected.
    pub fn execute<'conn, 'q>(self, tx: &'conn mut TenantTx<'t>) -> ExecuteFuture<'conn, 'q>
    where
        S: ExecuteDsl<AsyncPgConnection> + 'q,
    {
        RunQueryDsl::execute(self.statement, tx.conn())
    }

    /// Runs a statement with `RETURNING`; returns the one row.
    pub fn get_result<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> GetResult<'conn, 'q, S, AsyncPgConnection, U>
    where
        U: Send + 'conn,
        S: LoadQuery<'q, AsyncPgConnection, U> + 'q,
    {
        RunQueryDsl::get_result(self.statement, tx.conn())
    }

    /// Runs a statement with `RETURNING`; returns every row.
    pub fn get_results<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> LoadFuture<'conn, 'q, S, AsyncPgConnection, U>
    where
        U: Send,
        S: LoadQuery<'q, AsyncPgConnection, U> + 'q,
    {
        RunQueryDsl::get_results(self.statement, tx.conn())
    }
}

/// The future of a statement's `execute`.
pub type ExecuteFuture<'conn, 'q> =
    <AsyncPgConnection as diesel_async::AsyncConnectionCore>::ExecuteFuture<'conn, 'q>;

impl<'t, T, U, Op> ScopedStatement<'t, InsertStatement<T, U, Op>>
where
    T: diesel::Table,
{
    /// Adds `RETURNING returns`.
    pub fn returning<E>(
        self,
        returns: E,
    ) -> ScopedStatement<'t, InsertStatement<T, U, Op, ReturningClause<E>>>
    where
        E: ScopeSafe<'t>,
        InsertStatement<T, U, Op, ReturningClause<E>>: diesel::query_builder::Query,
    {
        ScopedStatement::new(self.statement.returning(returns), self.brand)
    }
}

impl<'t, T, U, V> ScopedStatement<'t, UpdateStatement<T, U, V>>
where
    T: diesel::Table + diesel::query_builder::QueryId,
{
    /// Adds `RETURNING returns`.
    pub fn returning<E>(
        self,
        returns: E,
    ) -> ScopedStatement<'t, UpdateStatement<T, U, V, ReturningClause<E>>>
    where
        E: ScopeSafe<'t>,
        UpdateStatement<T, U, V, ReturningClause<E>>: diesel::query_builder::Query,
    {
        ScopedStatement::new(self.statement.returning(returns), self.brand)
    }
}

impl<'t, T, U> ScopedStatement<'t, DeleteStatement<T, U>>
where
    T: diesel::Table + diesel::query_builder::QueryId,
{
    /// Adds `RETURNING returns`.
    pub fn returning<E>(
        self,
        returns: E,
    ) -> ScopedStatement<'t, DeleteStatement<T, U, ReturningClause<E>>>
    where
        E: ScopeSafe<'t> + diesel::SelectableExpression<T>,
        DeleteStatement<T, U, ReturningClause<E>>: diesel::query_builder::Query,
    {
        ScopedStatement::new(self.statement.returning(returns), self.brand)
    }
}

/// `INSERT INTO table`, waiting for its values.
#[must_use = "call `.values(..)`"]
#[derive(Debug, Clone, Copy)]
pub struct ScopedInsert<'t, T> {
    table: T,
    scope: TenantScope<'t>,
}

/// The `INSERT` statement for rows `V` into `T`, tenant column included.
pub type InsertOf<T, V> = InsertStatement<T, <WithTenant<T, V> as Insertable<T>>::Values>;

/// The rows `V` with the scope's tenant column added, ready for `INSERT`.
pub type WithTenant<T, V> = <V as crate::private::SealedValues<T>>::WithTenant<TenantFilter<T>>;

impl<'t, T: TenantTable> ScopedInsert<'t, T> {
    /// The row (or `Vec` of rows) to insert; the tenant column is filled from the scope.
    pub fn values<V>(self, values: V) -> ScopedStatement<'t, InsertOf<T, V>>
    where
        V: TenantValues<T>,
        WithTenant<T, V>: Insertable<T>,
    {
        let tenant = tenant_filter::<T>(self.scope.tenant_id().as_uuid());
        ScopedStatement::new(
            diesel::insert_into(self.table).values(values.with_tenant(tenant)),
            self.scope.brand(),
        )
    }
}

/// An `UPDATE` or a `DELETE` on a tenant table, already narrowed to the scope and waiting for
/// more filters; `Op` ([`UpdateOp`] / [`DeleteOp`]) says which, and so which methods finish it.
#[must_use = "a statement does nothing until it runs"]
#[derive(Debug, Clone, Copy)]
pub struct Narrowed<'t, T, S, Op> {
    source: S,
    table: PhantomData<(T, Op)>,
    brand: Brand<'t>,
}

/// Marks a [`Narrowed`] statement as an `UPDATE`: finish it with `set`.
#[derive(Debug, Clone, Copy)]
pub struct UpdateOp;

/// Marks a [`Narrowed`] statement as a `DELETE`: finish it with `execute` or `statement`.
#[derive(Debug, Clone, Copy)]
pub struct DeleteOp;

/// `UPDATE table SET … WHERE tenant_col = $tenant AND (…)`, waiting for `set`.
pub type ScopedUpdate<'t, T, S> = Narrowed<'t, T, S, UpdateOp>;

/// `DELETE FROM table WHERE tenant_col = $tenant AND (…)`.
pub type ScopedDelete<'t, T, S> = Narrowed<'t, T, S, DeleteOp>;

impl<'t> TenantScope<'t> {
    /// `INSERT INTO table …`; the tenant column is filled from this scope.
    pub fn insert<T: TenantTable>(&self, table: T) -> ScopedInsert<'t, T> {
        ScopedInsert {
            table,
            scope: *self,
        }
    }

    /// `UPDATE table SET … WHERE tenant_col = $tenant AND (…)`.
    pub fn update<T>(&self, table: T) -> ScopedUpdate<'t, T, dsl::Filter<T, TenantFilter<T>>>
    where
        T: TenantTable + FilterDsl<TenantFilter<T>>,
    {
        self.narrowed(table)
    }

    /// `DELETE FROM table WHERE tenant_col = $tenant AND (…)`.
    pub fn delete<T>(&self, table: T) -> ScopedDelete<'t, T, dsl::Filter<T, TenantFilter<T>>>
    where
        T: TenantTable + FilterDsl<TenantFilter<T>>,
    {
        self.narrowed(table)
    }

    fn narrowed<T, Op>(&self, table: T) -> Narrowed<'t, T, dsl::Filter<T, TenantFilter<T>>, Op>
    where
        T: TenantTable + FilterDsl<TenantFilter<T>>,
    {
        Narrowed {
            source: table.filter(tenant_filter::<T>(self.tenant_id().as_uuid())),
            table: PhantomData,
            brand: self.brand(),
        }
    }
}

impl<'t, T: TenantTable, S, Op> Narrowed<'t, T, S, Op> {
    /// Adds `AND (predicate)`.
    pub fn filter<P>(self, predicate: P) -> Narrowed<'t, T, dsl::Filter<S, Paren<P>>, Op>
    where
        P: ScopeSafe<'t>,
        S: FilterDsl<Paren<P>>,
    {
        Narrowed {
            source: self.source.filter(Paren(predicate)),
            table: PhantomData,
            brand: self.brand,
        }
    }
}

impl<'t, T: TenantTable, S> ScopedUpdate<'t, T, S> {
    /// The new values; they cannot name the tenant column.
    pub fn set<V>(
        self,
        values: V,
    ) -> ScopedStatement<
        't,
        UpdateStatement<T, S::WhereClause, <V::Changes as AsChangeset>::Changeset>,
    >
    where
        V: TenantValues<T>,
        V::Changes: AsChangeset<Target = T>,
        S: IntoUpdateTarget<Table = T>,
        UpdateStatement<T, S::WhereClause, <V::Changes as AsChangeset>::Changeset>:
            diesel::query_builder::AsQuery,
    {
        ScopedStatement::new(
            diesel::update(self.source).set(values.changes()),
            self.brand,
        )
    }
}

impl<'t, T: TenantTable, S> ScopedDelete<'t, T, S> {
    /// The statement, ready to run or to take a `RETURNING` clause.
    pub fn statement(self) -> ScopedStatement<'t, DeleteStatement<T, S::WhereClause>>
    where
        S: IntoUpdateTarget<Table = T>,
    {
        ScopedStatement::new(diesel::delete(self.source), self.brand)
    }

    /// Runs the delete; returns the number of rows deleted.
    pub fn execute<'conn, 'q>(self, tx: &'conn mut TenantTx<'t>) -> ExecuteFuture<'conn, 'q>
    where
        S: IntoUpdateTarget<Table = T>,
        DeleteStatement<T, S::WhereClause>: ExecuteDsl<AsyncPgConnection> + 'q,
    {
        self.statement().execute(tx)
    }
}
