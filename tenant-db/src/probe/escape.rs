//! [`unscoped_expr`]: the one escape hatch for expressions tenant-db cannot check.

use diesel::QueryResult;
use diesel::backend::Backend;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

/// **Escape hatch.** Accepts an expression tenant-db cannot check (raw SQL text from
/// `diesel::dsl::sql`, a boxed or plain diesel subquery, a boxed expression) inside a scoped
/// query.
///
/// What still guards it: the scoped query's own tenant filter stays the outermost condition,
/// but the text is pasted as is, so an unbalanced parenthesis or a `--` in it can undo that
/// filter; and a subquery in it reads whatever it names. Only row-level security, as the
/// application role with the transaction's sealed tenant, then stands between it and other
/// tenants' rows. Never build the text from user input. `grep unscoped` lists every use.
///
/// ```
/// use diesel::sql_types::Bool;
/// let trusted = tenant_db::unscoped_expr(diesel::dsl::sql::<Bool>("body ~ '^[a-z]+$'"));
/// # let _ = trusted;
/// ```
pub fn unscoped_expr<E: Expression + QueryFragment<Pg>>(expr: E) -> UnscopedExpr<E> {
    let refused = crate::guard::check_unscoped(&expr);
    UnscopedExpr { expr, refused }
}

/// The expression [`unscoped_expr`] returns.
#[derive(Debug, Clone, Copy)]
pub struct UnscopedExpr<E> {
    expr: E,
    /// What the run-time check refused in its text, if anything: the statement fails.
    refused: Option<crate::guard::Refusal>,
}

impl<E: Expression> Expression for UnscopedExpr<E> {
    type SqlType = E::SqlType;
}

impl<E, DB> QueryFragment<DB> for UnscopedExpr<E>
where
    DB: Backend,
    E: QueryFragment<DB> + QueryId,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        if let Some(reason) = self.refused {
            return Err(crate::guard::refused(reason));
        }
        if crate::guard::placeholder(&mut out) {
            return Ok(());
        }
        super::audit::uncacheable_unless_static::<E, DB>(&mut out);
        self.expr.walk_ast(out)
    }
}

// Its SQL can vary between values of one type: `walk_ast` tells diesel not to cache it.
impl<E: QueryId> QueryId for UnscopedExpr<E> {
    type QueryId = UnscopedExpr<E::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<E, QS> AppearsOnTable<QS> for UnscopedExpr<E> where E: Expression {}
impl<E, QS> SelectableExpression<QS> for UnscopedExpr<E> where E: Expression {}
impl<E: ValidGrouping<GB>, GB> ValidGrouping<GB> for UnscopedExpr<E> {
    type IsAggregate = E::IsAggregate;
}
