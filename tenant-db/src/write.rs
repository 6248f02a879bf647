//! Scoped write statements: [`ScopedStatement`] (any write, ready to run), and updates and
//! deletes on tenant tables, narrowed to the scope.
//!
//! Updates and deletes filter by the scope's tenant first and parenthesise each user predicate;
//! an update's changeset is [`TenantValues`], so it cannot name the tenant column. Inserts live
//! in [`crate::insert`].

use crate::guard::{Guarded, Shape, guarded};
use crate::probe::{Paren, ScopeSafe, audit};
use crate::query::{TenantFilter, tenant_filter};
use crate::run::{LoadOne, LoadRows, Loads, SqlKeyed};
use crate::sealed::Writes;
use crate::tx::TenantTx;
use crate::{TenantScope, TenantTable, TenantValues};
use diesel::dsl;
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::query_builder::{
    AsChangeset, DeleteStatement, IntoUpdateTarget, ReturningClause, UpdateStatement,
};
use diesel::query_dsl::methods::FilterDsl;
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::future::Future;
use std::marker::PhantomData;

/// A write statement built from a scope, branded `'t`; run it with
/// [`execute`](ScopedStatement::execute), or after `returning` with
/// [`get_result`](ScopedStatement::get_result) / [`get_results`](ScopedStatement::get_results).
#[must_use = "a statement does nothing until it runs"]
#[derive(Debug, Clone, Copy)]
pub struct ScopedStatement<'t, S> {
    statement: S,
    scope: TenantScope<'t>,
}

impl<'t, S> ScopedStatement<'t, S> {
    pub(crate) fn new(statement: S, scope: TenantScope<'t>) -> Self {
        ScopedStatement { statement, scope }
    }

    pub(crate) fn into_parts(self) -> (S, TenantScope<'t>) {
        (self.statement, self.scope)
    }

    /// Runs the statement; returns the number of rows affected.
    pub fn execute<'conn, 'q>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> Guarded<'t, ExecuteFuture<'t, 'conn, 'q>>
    where
        S: QueryFragment<Pg> + Send + 'q,
    {
        guarded(tx, self.scope, self.statement, RunQueryDsl::execute)
    }

    /// Runs the statement and requires it to have written exactly one row of this tenant: an
    /// update or delete by key, say. No row is [`diesel::result::Error::NotFound`] (404 at the
    /// axum edge), with a `WARN` event on target `tenant_db::not_found` naming the tenant, so
    /// that ids guessed from another tenant show up in errors and logs; more than one row is
    /// [`ManyRows`] (returned from the closure, it rolls the transaction back; with
    /// [`TenantTx::last`] `COMMIT` went out with the statement, so use it without).
    pub fn execute_one<'conn, 'q>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> ExactlyOne<Guarded<'t, ExecuteFuture<'t, 'conn, 'q>>>
    where
        S: QueryFragment<Pg> + Send + 'q,
    {
        let tenant = self.scope.tenant_id();
        ExactlyOne {
            run: self.execute(tx),
            tenant,
        }
    }

    /// Runs a statement with `RETURNING`; returns the one row.
    pub fn get_result<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> LoadOne<'t, 'conn, 'q, S, U>
    where
        U: Send + 'conn,
        SqlKeyed<S>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        guarded(tx, self.scope, self.statement, RunQueryDsl::get_result)
    }

    /// Runs a statement with `RETURNING`; returns every row.
    pub fn get_results<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> LoadRows<'t, 'conn, 'q, S, U>
    where
        U: Send,
        SqlKeyed<S>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        guarded(tx, self.scope, self.statement, RunQueryDsl::get_results)
            .counting(crate::flight::rows_of)
    }
}

/// A write meant for exactly one row wrote several ([`ScopedStatement::execute_one`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a write meant for exactly one row wrote {rows}")]
pub struct ManyRows {
    /// How many it wrote.
    pub rows: usize,
}

/// The future of [`ScopedStatement::execute_one`].
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct ExactlyOne<F> {
    run: F,
    tenant: crate::TenantId,
}

impl<F> Future for ExactlyOne<F>
where
    F: Future<Output = diesel::QueryResult<usize>> + Unpin,
{
    type Output = diesel::QueryResult<()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let tenant = self.tenant;
        std::pin::Pin::new(&mut self.run)
            .poll(cx)
            .map(|rows| exactly_one(rows?, tenant))
    }
}

/// `Ok` for one row, `NotFound` (and a `WARN`) for none, [`ManyRows`] for more.
fn exactly_one(rows: usize, tenant: crate::TenantId) -> diesel::QueryResult<()> {
    match rows {
        1 => Ok(()),
        0 => {
            tracing::warn!(
                target: "tenant_db::not_found",
                tenant_id = %tenant,
                "a write by key matched no row of this tenant"
            );
            Err(diesel::result::Error::NotFound)
        }
        rows => Err(diesel::result::Error::QueryBuilderError(Box::new(
            ManyRows { rows },
        ))),
    }
}

/// The future of a statement's `execute`.
pub type ExecuteFuture<'t, 'conn, 'q> =
    <&'t AsyncPgConnection as diesel_async::AsyncConnectionCore>::ExecuteFuture<'conn, 'q>;

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
        audit!(E);
        let scope = self.scope.checked(&returns, Shape::List);
        ScopedStatement::new(self.statement.returning(returns), scope)
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
        audit!(E);
        let scope = self.scope.checked(&returns, Shape::List);
        ScopedStatement::new(self.statement.returning(returns), scope)
    }
}

/// An `UPDATE` or a `DELETE` on a tenant table, already narrowed to the scope and waiting for
/// more filters; `Op` ([`UpdateOp`] / [`DeleteOp`]) says which, and so which methods finish it.
#[must_use = "a statement does nothing until it runs"]
#[derive(Debug, Clone, Copy)]
pub struct Narrowed<'t, T, S, Op> {
    source: S,
    table: PhantomData<(T, Op)>,
    scope: TenantScope<'t>,
}

/// The changeset an update with values `V` on table `T` sets.
pub type ChangesetOf<T, V> =
    <<<V as TenantValues<T>>::Update as Writes<T>>::Diesel as AsChangeset>::Changeset;

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
            source: table.filter(tenant_filter::<T>(self.tenant_id())),
            table: PhantomData,
            scope: *self,
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
        audit!(P);
        let scope = self.scope.checked(&predicate, Shape::Expression);
        Narrowed {
            source: self.source.filter(Paren(predicate)),
            table: PhantomData,
            scope,
        }
    }
}

impl<'t, T: TenantTable, S> ScopedUpdate<'t, T, S> {
    /// The new values; they cannot name the tenant column.
    pub fn set<V>(
        self,
        values: V,
    ) -> ScopedStatement<'t, UpdateStatement<T, S::WhereClause, ChangesetOf<T, V>>>
    where
        V: TenantValues<T>,
        V::Update: Writes<T>,
        <V::Update as Writes<T>>::Probe: ScopeSafe<'t>,
        <V::Update as Writes<T>>::Diesel: AsChangeset<Target = T>,
        S: IntoUpdateTarget<Table = T>,
        UpdateStatement<T, S::WhereClause, ChangesetOf<T, V>>: diesel::query_builder::AsQuery,
    {
        audit!(<V::Update as Writes<T>>::Probe);
        let values = values.into_update();
        let scope = self.scope.checked_values(&values);
        ScopedStatement::new(diesel::update(self.source).set(values.into_diesel()), scope)
    }
}

impl<'t, T: TenantTable, S> ScopedDelete<'t, T, S> {
    /// The statement, ready to run or to take a `RETURNING` clause.
    pub fn statement(self) -> ScopedStatement<'t, DeleteStatement<T, S::WhereClause>>
    where
        S: IntoUpdateTarget<Table = T>,
    {
        ScopedStatement::new(diesel::delete(self.source), self.scope)
    }

    /// Runs the delete; returns the number of rows deleted.
    pub fn execute<'conn, 'q>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> Guarded<'t, ExecuteFuture<'t, 'conn, 'q>>
    where
        S: IntoUpdateTarget<Table = T>,
        DeleteStatement<T, S::WhereClause>: QueryFragment<Pg> + Send + 'q,
    {
        self.statement().execute(tx)
    }

    /// Runs the delete and requires exactly one row of this tenant to go: see
    /// [`ScopedStatement::execute_one`].
    pub fn execute_one<'conn, 'q>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> ExactlyOne<Guarded<'t, ExecuteFuture<'t, 'conn, 'q>>>
    where
        S: IntoUpdateTarget<Table = T>,
        DeleteStatement<T, S::WhereClause>: QueryFragment<Pg> + Send + 'q,
    {
        self.statement().execute_one(tx)
    }
}
