//! [`TenantEq`]: the tenant predicate, `"table"."tenant_col" = $tenant`, the one place it is
//! built.
//!
//! tenant-db writes it itself, from the table's `FROM` clause and the tenant column's name as a
//! quoted identifier, instead of asking the column to render itself: a hand-written column type
//! could render anything there (`… IS NOT NULL OR …`), and this predicate is the wall.

use crate::TenantId;
use crate::TenantTable;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::Bool;
use diesel::{Column, QueryResult, QuerySource};
use std::marker::PhantomData;

/// `"table"."tenant_col" = $tenant` for tenant table `T`.
pub struct TenantEq<T: QuerySource> {
    from: T::FromClause,
    tenant: TenantId,
    table: PhantomData<T>,
}

impl<T: QuerySource> Clone for TenantEq<T>
where
    T::FromClause: Clone,
{
    fn clone(&self) -> Self {
        TenantEq {
            from: self.from.clone(),
            tenant: self.tenant,
            table: PhantomData,
        }
    }
}

impl<T: QuerySource> Copy for TenantEq<T> where T::FromClause: Copy {}

impl<T: QuerySource> std::fmt::Debug for TenantEq<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantEq")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The tenant predicate of table `T` (see the module docs).
pub(crate) fn tenant_eq<T: TenantTable>(tenant: TenantId) -> TenantEq<T> {
    TenantEq {
        from: T::default().from_clause(),
        tenant,
        table: PhantomData,
    }
}

impl<T: QuerySource> Expression for TenantEq<T> {
    type SqlType = Bool;
}

impl<T> QueryFragment<Pg> for TenantEq<T>
where
    T: TenantTable,
    <T as QuerySource>::FromClause: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if !out.should_skip_from() {
            self.from.walk_ast(out.reborrow())?;
            out.push_sql(".");
        }
        out.push_identifier(<T::TenantColumn as Column>::NAME)?;
        out.push_sql(" = ");
        T::KEY_TYPE.push_bind(&self.tenant, &mut out)
    }
}

impl<T: QuerySource + 'static> QueryId for TenantEq<T> {
    type QueryId = TenantEq<T>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: TenantTable, QS> AppearsOnTable<QS> for TenantEq<T> where T::TenantColumn: AppearsOnTable<QS>
{}
impl<T: TenantTable, QS> SelectableExpression<QS> for TenantEq<T> where
    T::TenantColumn: SelectableExpression<QS>
{
}
impl<T: TenantTable, GB> ValidGrouping<GB> for TenantEq<T>
where
    T::TenantColumn: ValidGrouping<GB>,
{
    type IsAggregate = <T::TenantColumn as ValidGrouping<GB>>::IsAggregate;
}

#[cfg(test)]
mod tests {
    diesel::table! { notes (id) { id -> BigInt, tenant_id -> Uuid, } }
    #[derive(crate::TenantTable)]
    #[diesel(table_name = notes)]
    #[allow(dead_code)]
    struct Note {
        id: i64,
        tenant_id: uuid::Uuid,
    }

    fn sql<Q: diesel::query_builder::QueryFragment<diesel::pg::Pg>>(q: &Q) -> String {
        diesel::debug_query::<diesel::pg::Pg, _>(q).to_string()
    }

    #[test]
    fn renders_the_qualified_tenant_column() {
        let t = crate::TenantId::from_uuid(uuid::Uuid::from_u128(7)).expect("not nil");
        assert_eq!(
            sql(&super::tenant_eq::<notes::table>(t)),
            format!("\"notes\".\"tenant_id\" = $1 -- binds: [{t}]")
        );
    }
}
