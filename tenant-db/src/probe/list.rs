//! [`list`]: a list of values for `eq_any` / `ne_all`, as one array parameter.

use diesel::QueryResult;
use diesel::expression::array_comparison::{AsInExpression, InExpression};
use diesel::expression::{
    AppearsOnTable, AsExpression, Expression, SelectableExpression, TypedExpressionType,
    ValidGrouping, is_aggregate,
};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{Array, HasSqlType, SingleValue, SqlType};
use std::marker::PhantomData;

/// A list of values for `eq_any` / `ne_all` inside a scoped query:
/// `col.eq_any(tenant_db::list(ids))` is `col = ANY($1)`, one array parameter.
///
/// diesel's own `eq_any(vec)` builds the same SQL on PostgreSQL, but its type does not say so
/// (other backends write one parameter per value), so tenant-db cannot tell it apart from raw
/// SQL and refuses it; `list` is the form it can check. Its statement is prepared once,
/// whatever the list's length.
///
/// ```
/// # include!("../../doctest_schema.rs");
/// # fn main() {
/// use diesel::ExpressionMethods;
/// let ids = vec![1_i64, 2, 3];
/// let _filter = notes::id.eq_any(tenant_db::list(ids));
/// # }
/// ```
pub fn list<T, I: IntoIterator<Item = T>>(values: I) -> List<T> {
    List(values.into_iter().collect())
}

/// The values [`list`] returns.
#[derive(Debug, Clone)]
pub struct List<T>(Vec<T>);

/// The `ANY($1)` operand a [`List`] becomes.
#[derive(Debug, Clone)]
pub struct ListExpr<ST, T> {
    values: Vec<T>,
    sql_type: PhantomData<ST>,
}

impl<ST, T> AsInExpression<ST> for List<T>
where
    ST: SqlType + TypedExpressionType + SingleValue,
    T: AsExpression<ST>,
{
    type InExpression = ListExpr<ST, T>;
    fn as_in_expression(self) -> Self::InExpression {
        ListExpr {
            values: self.0,
            sql_type: PhantomData,
        }
    }
}

impl<ST: SqlType, T> InExpression for ListExpr<ST, T> {
    type SqlType = ST;
    // PostgreSQL writes `col = ANY($1)`, which an empty array makes false, as it should.
    fn is_empty(&self) -> bool {
        false
    }
    fn is_array(&self) -> bool {
        false
    }
}

impl<ST: TypedExpressionType, T> Expression for ListExpr<ST, T> {
    type SqlType = ST;
}

impl<ST, T> QueryFragment<Pg> for ListExpr<ST, T>
where
    ST: SingleValue,
    Pg: HasSqlType<ST>,
    Vec<T>: ToSql<Array<ST>, Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_bind_param::<Array<ST>, Vec<T>>(&self.values)
    }
}

impl<ST: 'static, T> QueryId for ListExpr<ST, T> {
    type QueryId = ListExpr<ST, ()>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<ST: TypedExpressionType, T, QS> AppearsOnTable<QS> for ListExpr<ST, T> {}
impl<ST: TypedExpressionType, T, QS> SelectableExpression<QS> for ListExpr<ST, T> {}
impl<ST, T, GB> ValidGrouping<GB> for ListExpr<ST, T> {
    type IsAggregate = is_aggregate::Never;
}
