//! Expression nodes and the compile-time probe that keep subqueries inside the scope.
//!
//! Every expression a scoped query accepts (filters, selections, orderings, join conditions)
//! must be [`ScopeSafe`]: it must type-check against [`OnlyScopedSubqueries`], a query source
//! that contains every table's columns but is not a diesel `QuerySource`. A plain diesel
//! subquery (`Subselect`, `exists`) requires a real `QuerySource` and so fails, while the
//! subqueries tenant-db builds from a scope ([`ScopedSubquery`], [`exists`]) pass, and only
//! within the transaction whose brand they carry.
//!
//! The type of raw SQL text and of type-erased parts (boxed selects, boxed expressions) says
//! nothing of what they read, so they pass any probe source: [`audit`] refuses them when the
//! code is compiled. [`unscoped_expr`] is the one named way to use them anyway, and [`list`]
//! the checked form of an `eq_any` list.

mod audit;
mod escape;
mod list;

pub(crate) use audit::audit;
pub use escape::{UnscopedExpr, unscoped_expr};
pub use list::{List, ListExpr, list};

use crate::scope::Brand;
use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::expression::array_comparison::{AsInExpression, InExpression};
use diesel::expression::{
    AppearsOnTable, Expression, SelectableExpression, TypedExpressionType, ValidGrouping,
    is_aggregate,
};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId, SelectQuery};
use diesel::query_source::{AppearsInFromClause, Once};
use diesel::sql_types::{Bool, SqlType};
use std::marker::PhantomData;

/// The probe source for transaction `'t`: the columns of every classified table (and of every
/// `diesel::alias!` of one) appear in it once, but it is not a diesel `QuerySource`, so
/// diesel's own subqueries cannot be checked against it.
///
/// When this type shows up in a compiler error ("`QuerySource` is not implemented for
/// `OnlyScopedSubqueries<'_>`"), an expression contains a subquery that was not built from the
/// scope: build it with `scope.query(table)…into_subquery()` or [`exists`].
#[derive(Debug, Clone, Copy)]
pub struct OnlyScopedSubqueries<'t>(Brand<'t>);

impl<'t, T: crate::sealed::Source> AppearsInFromClause<T> for OnlyScopedSubqueries<'t> {
    type Count = Once;
}

/// Sources a scoped subquery from transaction `'t` may appear in: the probe for `'t`, and
/// diesel's real sources (checked separately by diesel).
pub trait InScopeSource<'t> {}

impl<'t> InScopeSource<'t> for OnlyScopedSubqueries<'t> {}
impl<'t> InScopeSource<'t> for diesel::internal::derives::multiconnection::NoFromClause {}
impl<'t, T: crate::Classified> InScopeSource<'t> for T {}
impl<'t, L, R, On> InScopeSource<'t> for diesel::dsl::InnerJoinQuerySource<L, R, On>
where
    L: diesel::QuerySource,
    R: diesel::QuerySource,
{
}
impl<'t, L, R, On> InScopeSource<'t> for diesel::dsl::LeftJoinQuerySource<L, R, On>
where
    L: diesel::QuerySource,
    R: diesel::QuerySource,
{
}

/// An expression that reads nothing outside transaction `'t`'s scope (see the module docs).
///
/// Implemented for every diesel expression that contains no subquery, and for subqueries built
/// from the scope of `'t`. Raw SQL and type-erased parts satisfy this bound but are refused
/// when the code is compiled (see [`unscoped_expr`]).
pub trait ScopeSafe<'t>: QueryId + QueryFragment<Pg> {}

impl<'t, E> ScopeSafe<'t> for E where
    E: AppearsOnTable<OnlyScopedSubqueries<'t>> + QueryId + QueryFragment<Pg>
{
}

/// Wraps a user predicate in parentheses, so that nothing inside it can change how it combines
/// with the tenant filter.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct Paren<P>(pub(crate) P);

impl<P: Expression> Expression for Paren<P> {
    type SqlType = P::SqlType;
}

impl<P, DB> QueryFragment<DB> for Paren<P>
where
    DB: Backend,
    P: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("(");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

impl<P, QS> AppearsOnTable<QS> for Paren<P> where P: AppearsOnTable<QS> {}
impl<P, QS> SelectableExpression<QS> for Paren<P> where P: SelectableExpression<QS> {}
impl<P, GB> ValidGrouping<GB> for Paren<P>
where
    P: ValidGrouping<GB>,
{
    type IsAggregate = P::IsAggregate;
}

/// A join condition with a tenant filter added: `(on) AND (tenant filter)`; keeps the type of
/// the original condition (joins through `joinable!` compare nullable columns).
#[derive(Debug, Clone, Copy, QueryId)]
pub struct AndTenant<On, F>(pub(crate) On, pub(crate) F);

impl<On: Expression, F> Expression for AndTenant<On, F> {
    type SqlType = On::SqlType;
}

impl<On, F, DB> QueryFragment<DB> for AndTenant<On, F>
where
    DB: Backend,
    On: QueryFragment<DB>,
    F: QueryFragment<DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("((");
        self.0.walk_ast(out.reborrow())?;
        out.push_sql(") AND (");
        self.1.walk_ast(out.reborrow())?;
        out.push_sql("))");
        Ok(())
    }
}

impl<On, F, QS> AppearsOnTable<QS> for AndTenant<On, F>
where
    On: AppearsOnTable<QS>,
    F: AppearsOnTable<QS>,
{
}
impl<On, F, QS> SelectableExpression<QS> for AndTenant<On, F>
where
    On: SelectableExpression<QS>,
    F: SelectableExpression<QS>,
{
}
impl<On, F, GB> ValidGrouping<GB> for AndTenant<On, F>
where
    On: ValidGrouping<GB>,
{
    type IsAggregate = On::IsAggregate;
}

/// A subquery built from a scope (its tenant filter already applied), for `eq_any` / `ne_all`
/// and [`exists`]. Get it with [`Scoped::into_subquery`](crate::Scoped::into_subquery).
#[derive(Debug, Clone, Copy)]
pub struct ScopedSubquery<'t, Q> {
    pub(crate) query: Q,
    pub(crate) brand: Brand<'t>,
    /// What the run-time check refused in a part of the subquery, if anything: a statement
    /// that uses it fails (see [`crate::guard`]).
    pub(crate) refused: Option<crate::guard::Refusal>,
}

/// The `IN (subquery)` operand made from a [`ScopedSubquery`].
#[derive(Debug, Clone, Copy)]
pub struct ScopedSubselect<'t, Q, ST> {
    query: Q,
    sql_type: PhantomData<ST>,
    brand: Brand<'t>,
    refused: Option<crate::guard::Refusal>,
}

impl<'t, Q, ST> AsInExpression<ST> for ScopedSubquery<'t, Q>
where
    ST: SqlType + TypedExpressionType,
    Q: SelectQuery<SqlType = ST>,
{
    type InExpression = ScopedSubselect<'t, Q, ST>;

    fn as_in_expression(self) -> Self::InExpression {
        ScopedSubselect {
            query: self.query,
            sql_type: PhantomData,
            brand: self.brand,
            refused: self.refused,
        }
    }
}

impl<Q, ST: SqlType + TypedExpressionType> InExpression for ScopedSubselect<'_, Q, ST> {
    type SqlType = ST;
    fn is_empty(&self) -> bool {
        false
    }
    fn is_array(&self) -> bool {
        false
    }
}

impl<Q, ST: SqlType + TypedExpressionType> Expression for ScopedSubselect<'_, Q, ST> {
    type SqlType = ST;
}

impl<Q, ST, DB> QueryFragment<DB> for ScopedSubselect<'_, Q, ST>
where
    DB: Backend,
    Q: QueryFragment<DB> + QueryId,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if let Some(reason) = self.refused {
            return Err(crate::guard::refused(reason));
        }
        if crate::guard::placeholder(&mut out) {
            return Ok(());
        }
        audit::uncacheable_unless_static::<Q, DB>(&mut out);
        self.query.walk_ast(out)
    }
}

// Built from the scope, so checked whatever it holds; a boxed scoped query has varying SQL,
// which `walk_ast` tells diesel not to cache.
impl<Q: QueryId, ST: 'static> QueryId for ScopedSubselect<'_, Q, ST> {
    type QueryId = ScopedSubselect<'static, Q::QueryId, ST>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<'t, Q, ST, QS> AppearsOnTable<QS> for ScopedSubselect<'t, Q, ST>
where
    Self: Expression,
    QS: InScopeSource<'t>,
{
}
impl<'t, Q, ST, QS> SelectableExpression<QS> for ScopedSubselect<'t, Q, ST>
where
    Self: AppearsOnTable<QS>,
    QS: InScopeSource<'t>,
{
}
impl<Q, ST, GB> ValidGrouping<GB> for ScopedSubselect<'_, Q, ST> {
    type IsAggregate = is_aggregate::Never;
}

/// `(subquery)` as a value over a scoped subquery of one column: a count, a sum, one row's
/// value; `NULL` when it has no row. Like [`exists`], it may name the outer query's columns
/// (a correlated subquery: the count of each project's tasks), and it is refused in a
/// scoped query when it was not built from the scope.
#[derive(Debug, Clone, Copy)]
pub struct ScopedScalar<'t, Q, ST> {
    query: Q,
    sql_type: PhantomData<ST>,
    brand: Brand<'t>,
    refused: Option<crate::guard::Refusal>,
}

/// The value of a scoped one-column subquery (see [`ScopedScalar`]).
pub fn scalar<'t, Q>(subquery: ScopedSubquery<'t, Q>) -> ScopedScalar<'t, Q, Q::SqlType>
where
    Q: SelectQuery,
    Q::SqlType: diesel::sql_types::SingleValue,
{
    ScopedScalar {
        query: subquery.query,
        sql_type: PhantomData,
        brand: subquery.brand,
        refused: subquery.refused,
    }
}

impl<Q, ST> Expression for ScopedScalar<'_, Q, ST>
where
    ST: diesel::sql_types::IntoNullable,
    ST::Nullable: TypedExpressionType,
{
    type SqlType = ST::Nullable;
}

impl<Q, ST, DB> QueryFragment<DB> for ScopedScalar<'_, Q, ST>
where
    DB: Backend,
    Q: QueryFragment<DB> + QueryId,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if let Some(reason) = self.refused {
            return Err(crate::guard::refused(reason));
        }
        if crate::guard::placeholder(&mut out) {
            return Ok(());
        }
        audit::uncacheable_unless_static::<Q, DB>(&mut out);
        out.push_sql("(");
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

// As for `ScopedSubselect`.
impl<Q: QueryId, ST: 'static> QueryId for ScopedScalar<'_, Q, ST> {
    type QueryId = ScopedScalar<'static, Q::QueryId, ST>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<'t, Q, ST, QS> AppearsOnTable<QS> for ScopedScalar<'t, Q, ST>
where
    Self: Expression,
    QS: InScopeSource<'t>,
{
}
impl<'t, Q, ST, QS> SelectableExpression<QS> for ScopedScalar<'t, Q, ST>
where
    Self: AppearsOnTable<QS>,
    QS: InScopeSource<'t>,
{
}
impl<Q, ST, GB> ValidGrouping<GB> for ScopedScalar<'_, Q, ST> {
    type IsAggregate = is_aggregate::Never;
}

/// `EXISTS (subquery)` over a scoped subquery.
///
/// Use it instead of `diesel::dsl::exists`, which tenant-db rejects inside scoped queries.
#[derive(Debug, Clone, Copy)]
pub struct ScopedExists<'t, Q> {
    query: Q,
    brand: Brand<'t>,
    refused: Option<crate::guard::Refusal>,
}

/// `EXISTS (subquery)` for a subquery built from the scope.
pub fn exists<'t, Q>(subquery: ScopedSubquery<'t, Q>) -> ScopedExists<'t, Q> {
    ScopedExists {
        query: subquery.query,
        brand: subquery.brand,
        refused: subquery.refused,
    }
}

impl<Q> Expression for ScopedExists<'_, Q> {
    type SqlType = Bool;
}

impl<Q, DB> QueryFragment<DB> for ScopedExists<'_, Q>
where
    DB: Backend,
    Q: QueryFragment<DB> + QueryId,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if let Some(reason) = self.refused {
            return Err(crate::guard::refused(reason));
        }
        if crate::guard::placeholder(&mut out) {
            return Ok(());
        }
        audit::uncacheable_unless_static::<Q, DB>(&mut out);
        out.push_sql("EXISTS (");
        self.query.walk_ast(out.reborrow())?;
        out.push_sql(")");
        Ok(())
    }
}

// As for `ScopedSubselect`.
impl<Q: QueryId> QueryId for ScopedExists<'_, Q> {
    type QueryId = ScopedExists<'static, Q::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<'t, Q, QS> AppearsOnTable<QS> for ScopedExists<'t, Q> where QS: InScopeSource<'t> {}
impl<'t, Q, QS> SelectableExpression<QS> for ScopedExists<'t, Q> where QS: InScopeSource<'t> {}
impl<Q, GB> ValidGrouping<GB> for ScopedExists<'_, Q> {
    type IsAggregate = is_aggregate::Never;
}
