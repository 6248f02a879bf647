//! [`Scoped`]: a select query on a classified table, built from a [`TenantScope`].
//!
//! The tenant filter of the root table is added when the query runs (or becomes a subquery),
//! as the outermost `AND` of the `WHERE` clause, so that no `or_filter` can widen it; each user
//! predicate is parenthesised. Each joined tenant table gets its tenant filter in its `ON`
//! clause, which keeps left joins outer joins.

use crate::guard::{Shape, guarded};
use crate::probe::{AndTenant, Paren, ScopeSafe, ScopedExists, ScopedSubquery, audit};
use crate::run::{LoadOne, LoadRows, Loads, SqlKeyed, StreamFuture, Streamed};
use crate::sealed::{Source, TenantSource};
use crate::table::{ColumnNames, kind};
use crate::tx::TenantTx;
use crate::{Classified, TenantScope, TenantTable};
use diesel::ExpressionMethods;
use diesel::dsl;
use diesel::expression::Expression;
use diesel::internal::derives::multiconnection::NoFromClause;
use diesel::internal::table_macro::{Inner, LeftOuter};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::query_dsl::methods::{
    BoxedDsl, DistinctDsl, FilterDsl, GroupByDsl, HavingDsl, LimitDsl, OffsetDsl, OrFilterDsl,
    OrderDsl, SelectDsl, ThenOrderDsl,
};
use diesel::query_dsl::{JoinOnDsl, JoinWithImplicitOnClause};
use diesel::query_source::JoinTo;
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use std::marker::PhantomData;

/// How a table kind narrows a query to the scope: tenant tables add `tenant_col = $tenant`,
/// global tables add nothing. Implemented on the kind markers; sealed.
pub trait ApplyScope<T, Q>: crate::sealed::Kind {
    /// The narrowed query.
    type Output;
    /// Narrows `query` to `tenant`.
    fn apply(query: Q, tenant: crate::TenantId) -> Self::Output;
}

/// The tenant predicate of table `T` (see [`TenantEq`](crate::TenantEq)).
pub type TenantFilter<T> = crate::predicate::TenantEq<T>;

/// `"T"."tenant_col" = tenant`.
pub(crate) fn tenant_filter<T: TenantTable>(tenant: crate::TenantId) -> TenantFilter<T> {
    crate::predicate::tenant_eq::<T>(tenant)
}

/// The tenant column's assignment in an `INSERT`: diesel writes the column by its name, and
/// tenant-db binds the tenant as the column's type (see [`TenantValue`](crate::TenantValue)).
pub type TenantAssign<T> = dsl::Eq<<T as TenantTable>::TenantColumn, crate::key::TenantValue<T>>;

/// `tenant_col = tenant`, for the values of an `INSERT`.
pub(crate) fn tenant_assign<T: TenantTable>(tenant: crate::TenantId) -> TenantAssign<T> {
    T::tenant_column().eq(crate::key::TenantValue::new(tenant))
}

impl<T, Q, C> ApplyScope<T, Q> for kind::Tenant<C>
where
    T: TenantTable,
    Q: FilterDsl<TenantFilter<T>>,
{
    type Output = Q::Output;
    fn apply(query: Q, tenant: crate::TenantId) -> Self::Output {
        query.filter(tenant_filter::<T>(tenant))
    }
}

impl<T, Q> ApplyScope<T, Q> for kind::Global
where
    T: diesel::Table,
    T::AllColumns: ColumnNames,
{
    type Output = Q;
    fn apply(query: Q, _tenant: crate::TenantId) -> Q {
        // The derive checks this where the table is declared; a hand-written `kind::Global`
        // is checked here, where it is read.
        const { crate::table::assert_global::<T>() };
        query
    }
}

impl<T, Q> ApplyScope<T, Q> for kind::UnscopedGlobal {
    type Output = Q;
    fn apply(query: Q, _tenant: crate::TenantId) -> Q {
        query
    }
}

/// How a joined source's kind extends a join's `ON` clause: tenant tables (and aliases of them)
/// add `AND tenant_col = $tenant`, qualified by the table or alias, global tables add nothing.
/// Sealed.
pub trait ScopeJoin<R, On>: crate::sealed::Kind {
    /// The extended `ON` condition.
    type Output;
    /// Extends `on` for source `R` and `tenant`.
    fn on(on: On, tenant: crate::TenantId) -> Self::Output;
}

impl<R, On, C> ScopeJoin<R, On> for kind::Tenant<C>
where
    R: TenantSource,
{
    type Output = AndTenant<On, crate::TenantEq<R>>;
    fn on(on: On, tenant: crate::TenantId) -> Self::Output {
        AndTenant(on, crate::predicate::tenant_eq::<R>(tenant))
    }
}

impl<R, On> ScopeJoin<R, On> for kind::Global
where
    R: Source,
    <R::Table as diesel::Table>::AllColumns: ColumnNames,
{
    type Output = On;
    fn on(on: On, _tenant: crate::TenantId) -> On {
        const { crate::table::assert_global::<R::Table>() };
        on
    }
}

impl<R, On> ScopeJoin<R, On> for kind::UnscopedGlobal {
    type Output = On;
    fn on(on: On, _tenant: crate::TenantId) -> On {
        on
    }
}

/// The query `Q` on root table `T`, narrowed to the scope.
pub type Applied<T, Q> = <<T as Classified>::Kind as ApplyScope<T, Q>>::Output;

/// The kind of the table a joined source `R` (a table or a `diesel::alias!`) reads.
pub type SourceKind<R> = <<R as Source>::Table as Classified>::Kind;

/// The right-hand side of a join after tenant-db has scoped its `ON` clause.
pub type ScopedJoinTarget<Q, R> = dsl::On<
    <Q as JoinTo<R>>::FromClause,
    <SourceKind<<Q as JoinTo<R>>::FromClause> as ScopeJoin<
        <Q as JoinTo<R>>::FromClause,
        <Q as JoinTo<R>>::OnClause,
    >>::Output,
>;

/// The future of [`Scoped::first`].
pub type FirstFuture<'t, 'conn, 'q, T, Q, U> = LoadOne<'t, 'conn, 'q, Applied<T, dsl::Limit<Q>>, U>;

/// The statement [`Scoped::exists`] runs.
pub type ExistsQuery<'t, T, Q> = dsl::select<ScopedExists<'t, Applied<T, Q>>>;

/// The future of [`Scoped::exists`].
pub type ExistsFuture<'t, 'conn, 'q, T, Q> = LoadOne<'t, 'conn, 'q, ExistsQuery<'t, T, Q>, bool>;

/// A select query on a classified table, narrowed to one tenant when it runs.
///
/// Built with [`TenantScope::query`]; carries the scope's brand `'t`, so it only runs in the
/// transaction it was built in. Run it with [`load`](Scoped::load),
/// [`get_result`](Scoped::get_result), [`first`](Scoped::first) or [`exists`](Scoped::exists).
#[must_use = "a query does nothing until it runs"]
#[derive(Debug, Clone, Copy)]
pub struct Scoped<'t, T, Q> {
    query: Q,
    scope: TenantScope<'t>,
    table: PhantomData<T>,
}

impl<'t> TenantScope<'t> {
    /// Starts a select query on `table`, a tenant table (narrowed to this scope's tenant) or a
    /// global table (read as is).
    pub fn query<T>(&self, table: T) -> Scoped<'t, T, diesel::dsl::Select<T, T::AllColumns>>
    where
        T: Classified + SelectDsl<T::AllColumns>,
    {
        Scoped {
            query: table.select(T::all_columns()),
            scope: *self,
            table: PhantomData,
        }
    }
}

impl<'t, T: Classified, Q> Scoped<'t, T, Q> {
    fn map<Q2>(self, f: impl FnOnce(Q) -> Q2) -> Scoped<'t, T, Q2> {
        Scoped {
            query: f(self.query),
            scope: self.scope,
            table: PhantomData,
        }
    }

    /// This query, with `part` (about to join it, as `shape`) checked (see [`crate::guard`]).
    fn check<E: QueryFragment<Pg>>(mut self, part: &E, shape: Shape) -> Self {
        self.scope = self.scope.checked(part, shape);
        self
    }

    /// Adds `AND (predicate)`.
    pub fn filter<P>(self, predicate: P) -> Scoped<'t, T, dsl::Filter<Q, Paren<P>>>
    where
        P: ScopeSafe<'t>,
        Q: FilterDsl<Paren<P>>,
    {
        audit!(P);
        self.check(&predicate, Shape::Expression)
            .map(|q| q.filter(Paren(predicate)))
    }

    /// Adds `OR (predicate)` to the user's predicates; the tenant filter still applies to all.
    pub fn or_filter<P>(self, predicate: P) -> Scoped<'t, T, dsl::OrFilter<Q, Paren<P>>>
    where
        P: ScopeSafe<'t>,
        Q: OrFilterDsl<Paren<P>>,
    {
        audit!(P);
        self.check(&predicate, Shape::Expression)
            .map(|q| q.or_filter(Paren(predicate)))
    }

    /// Sets the selection (columns, tuples, `Model::as_select()`, aggregates).
    pub fn select<S>(self, selection: S) -> Scoped<'t, T, dsl::Select<Q, S>>
    where
        S: ScopeSafe<'t> + Expression,
        Q: SelectDsl<S>,
    {
        audit!(S);
        self.check(&selection, Shape::List)
            .map(|q| q.select(selection))
    }

    /// Sets `ORDER BY`.
    pub fn order<O>(self, order: O) -> Scoped<'t, T, dsl::Order<Q, O>>
    where
        O: ScopeSafe<'t> + Expression,
        Q: OrderDsl<O>,
    {
        audit!(O);
        self.check(&order, Shape::List).map(|q| q.order(order))
    }

    /// Appends to `ORDER BY`.
    pub fn then_order_by<O>(self, order: O) -> Scoped<'t, T, dsl::ThenOrderBy<Q, O>>
    where
        O: ScopeSafe<'t> + Expression,
        Q: ThenOrderDsl<O>,
    {
        audit!(O);
        self.check(&order, Shape::List)
            .map(|q| q.then_order_by(order))
    }

    /// Sets `LIMIT`.
    pub fn limit(self, limit: i64) -> Scoped<'t, T, dsl::Limit<Q>>
    where
        Q: LimitDsl,
    {
        self.map(|q| q.limit(limit))
    }

    /// Sets `OFFSET`.
    pub fn offset(self, offset: i64) -> Scoped<'t, T, dsl::Offset<Q>>
    where
        Q: OffsetDsl,
    {
        self.map(|q| q.offset(offset))
    }

    /// `SELECT DISTINCT`.
    pub fn distinct(self) -> Scoped<'t, T, dsl::Distinct<Q>>
    where
        Q: DistinctDsl,
    {
        self.map(|q| q.distinct())
    }

    /// Sets `GROUP BY`.
    pub fn group_by<G>(self, group: G) -> Scoped<'t, T, dsl::GroupBy<Q, G>>
    where
        G: ScopeSafe<'t> + Expression,
        Q: GroupByDsl<G>,
    {
        audit!(G);
        self.check(&group, Shape::List).map(|q| q.group_by(group))
    }

    /// Sets `HAVING`.
    pub fn having<P>(self, predicate: P) -> Scoped<'t, T, dsl::Having<Q, Paren<P>>>
    where
        P: ScopeSafe<'t>,
        Q: HavingDsl<Paren<P>>,
    {
        audit!(P);
        self.check(&predicate, Shape::Expression)
            .map(|q| q.having(Paren(predicate)))
    }

    /// `SELECT COUNT(*)`; run it with [`get_result::<i64>`](Scoped::get_result).
    pub fn count(self) -> Scoped<'t, T, dsl::Select<Q, dsl::CountStar>>
    where
        Q: SelectDsl<dsl::CountStar>,
    {
        self.map(|q| q.select(dsl::count_star()))
    }

    /// Boxes the query (for queries assembled at run time); it stays scoped.
    pub fn into_boxed<'a>(self) -> Scoped<'t, T, dsl::IntoBoxed<'a, Q, Pg>>
    where
        Q: BoxedDsl<'a, Pg>,
    {
        self.map(|q| q.internal_into_boxed())
    }

    /// `INNER JOIN` another classified table: through `joinable!` (pass the table) or an
    /// explicit condition (pass `table.on(condition)`). A joined tenant table gets its tenant
    /// filter in the `ON` clause. A `diesel::alias!` of a classified table joins the same way
    /// (`alias.on(condition)`, for self-joins): each alias gets its own tenant filter.
    pub fn inner_join<R>(self, rhs: R) -> Scoped<'t, T, dsl::InnerJoin<Q, ScopedJoinTarget<Q, R>>>
    where
        Q: JoinTo<R>,
        <Q as JoinTo<R>>::FromClause: Source,
        <Q as JoinTo<R>>::OnClause: ScopeSafe<'t>,
        SourceKind<<Q as JoinTo<R>>::FromClause>:
            ScopeJoin<<Q as JoinTo<R>>::FromClause, <Q as JoinTo<R>>::OnClause>,
        <Q as JoinTo<R>>::FromClause: JoinOnDsl,
        Q: JoinWithImplicitOnClause<ScopedJoinTarget<Q, R>, Inner>,
    {
        audit!(<Q as JoinTo<R>>::OnClause);
        self.join(rhs, Inner)
    }

    /// `LEFT OUTER JOIN` another classified table, as [`inner_join`](Scoped::inner_join); the
    /// joined table's tenant filter goes in the `ON` clause, so outer rows are kept.
    pub fn left_join<R>(self, rhs: R) -> Scoped<'t, T, dsl::LeftJoin<Q, ScopedJoinTarget<Q, R>>>
    where
        Q: JoinTo<R>,
        <Q as JoinTo<R>>::FromClause: Source,
        <Q as JoinTo<R>>::OnClause: ScopeSafe<'t>,
        SourceKind<<Q as JoinTo<R>>::FromClause>:
            ScopeJoin<<Q as JoinTo<R>>::FromClause, <Q as JoinTo<R>>::OnClause>,
        <Q as JoinTo<R>>::FromClause: JoinOnDsl,
        Q: JoinWithImplicitOnClause<ScopedJoinTarget<Q, R>, LeftOuter>,
    {
        audit!(<Q as JoinTo<R>>::OnClause);
        self.join(rhs, LeftOuter)
    }

    /// Joins `rhs` with the join kind `kind`, its tenant filter (if any) added to the `ON` clause.
    fn join<R, K>(
        self,
        rhs: R,
        kind: K,
    ) -> Scoped<'t, T, <Q as JoinWithImplicitOnClause<ScopedJoinTarget<Q, R>, K>>::Output>
    where
        Q: JoinTo<R>,
        <Q as JoinTo<R>>::FromClause: Source,
        <Q as JoinTo<R>>::OnClause: ScopeSafe<'t>,
        SourceKind<<Q as JoinTo<R>>::FromClause>:
            ScopeJoin<<Q as JoinTo<R>>::FromClause, <Q as JoinTo<R>>::OnClause>,
        <Q as JoinTo<R>>::FromClause: JoinOnDsl,
        Q: JoinWithImplicitOnClause<ScopedJoinTarget<Q, R>, K>,
    {
        let tenant = self.scope.tenant_id();
        let (from, on) = <Q as JoinTo<R>>::join_target(rhs);
        self.check(&on, Shape::Expression).map(|q| {
            let on = <SourceKind<<Q as JoinTo<R>>::FromClause> as ScopeJoin<_, _>>::on(on, tenant);
            q.join_with_implicit_on_clause(from.on(on), kind)
        })
    }

    /// The query narrowed to the scope, as a subquery for `eq_any` / `ne_all` or
    /// [`exists`](crate::exists) inside another query of the same transaction.
    pub fn into_subquery(self) -> ScopedSubquery<'t, Applied<T, Q>>
    where
        T::Kind: ApplyScope<T, Q>,
    {
        let (brand, refused) = (self.scope.brand(), self.scope.refusal());
        ScopedSubquery {
            query: self.finish(),
            brand,
            refused,
        }
    }

    fn finish(self) -> Applied<T, Q>
    where
        T::Kind: ApplyScope<T, Q>,
    {
        <T::Kind as ApplyScope<T, Q>>::apply(self.query, self.scope.tenant_id())
    }

    /// Runs the query and returns all rows.
    pub fn load<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> LoadRows<'t, 'conn, 'q, Applied<T, Q>, U>
    where
        U: Send,
        T::Kind: ApplyScope<T, Q>,
        SqlKeyed<Applied<T, Q>>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        let scope = self.scope;
        guarded(tx, scope, self.finish(), RunQueryDsl::load).counting(crate::flight::rows_of)
    }

    /// Runs the query and streams its rows as they come (for large reads and exports), instead
    /// of collecting them. The [`RowStream`](crate::RowStream) is branded like the scope: it is
    /// read inside the transaction closure, which holds the transaction and its tenant until the
    /// closure ends; dropping it midway discards the rest and the transaction goes on.
    pub fn load_stream<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> StreamFuture<'t, 'conn, 'q, Applied<T, Q>, U>
    where
        U: Send + 'conn,
        T::Kind: ApplyScope<T, Q>,
        SqlKeyed<Applied<T, Q>>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        let scope = self.scope;
        Streamed::new(guarded(tx, scope, self.finish(), RunQueryDsl::load_stream).without_flight())
    }

    /// Runs the query and returns exactly one row ([`diesel::result::Error::NotFound`] if none;
    /// use diesel's `OptionalExtension::optional` for an `Option`).
    pub fn get_result<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> LoadOne<'t, 'conn, 'q, Applied<T, Q>, U>
    where
        U: Send + 'conn,
        T::Kind: ApplyScope<T, Q>,
        SqlKeyed<Applied<T, Q>>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        let scope = self.scope;
        guarded(tx, scope, self.finish(), RunQueryDsl::get_result)
    }

    /// Runs the query with `LIMIT 1` and returns the row.
    pub fn first<'conn, 'q, U>(
        self,
        tx: &'conn mut TenantTx<'t>,
    ) -> FirstFuture<'t, 'conn, 'q, T, Q, U>
    where
        U: Send + 'conn,
        Q: LimitDsl,
        T::Kind: ApplyScope<T, dsl::Limit<Q>>,
        SqlKeyed<Applied<T, dsl::Limit<Q>>>:
            LoadQuery<'q, &'t AsyncPgConnection, U> + Loads<'q, U> + QueryFragment<Pg> + 'q,
    {
        self.limit(1).get_result(tx)
    }

    /// `SELECT EXISTS (query)`: whether the scope holds any matching row.
    pub fn exists<'conn, 'q>(self, tx: &'conn mut TenantTx<'t>) -> ExistsFuture<'t, 'conn, 'q, T, Q>
    where
        T::Kind: ApplyScope<T, Q>,
        ScopedExists<'t, Applied<T, Q>>: diesel::expression::SelectableExpression<NoFromClause>
            + diesel::expression::ValidGrouping<()>,
        SqlKeyed<ExistsQuery<'t, T, Q>>:
            LoadQuery<'q, &'t AsyncPgConnection, bool> + Loads<'q, bool> + QueryFragment<Pg> + 'q,
    {
        let scope = self.scope;
        let exists = crate::probe::exists(self.into_subquery());
        guarded(tx, scope, diesel::select(exists), RunQueryDsl::get_result)
    }
}
