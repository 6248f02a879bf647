//! [`TenantEq`]: the tenant predicate, `"table"."tenant_col" = $tenant`, the one place it is
//! built.
//!
//! tenant-db writes it itself, from the table's `FROM` clause (or a `diesel::alias!`'s name) and
//! the tenant column's name as a quoted identifier, instead of asking the column to render
//! itself: a hand-written column type could render anything there (`… IS NOT NULL OR …`), and
//! this predicate is the wall.

use crate::TenantId;
use crate::TenantTable;
use crate::sealed::TenantSource;
use diesel::expression::{AppearsOnTable, Expression, SelectableExpression, ValidGrouping};
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::query_source::AliasSource;
use diesel::sql_types::Bool;
use diesel::{Column, QueryResult};
use std::marker::PhantomData;

/// `"table"."tenant_col" = $tenant` for tenant table `T`, or `"alias"."tenant_col" = $tenant`
/// for a `diesel::alias!` of one.
pub struct TenantEq<T: TenantSource> {
    from: T::Qualifier,
    tenant: TenantId,
    table: PhantomData<T>,
}

impl<T: TenantSource> Clone for TenantEq<T>
where
    T::Qualifier: Clone,
{
    fn clone(&self) -> Self {
        TenantEq {
            from: self.from.clone(),
            tenant: self.tenant,
            table: PhantomData,
        }
    }
}

impl<T: TenantSource> Copy for TenantEq<T> where T::Qualifier: Copy {}

impl<T: TenantSource> std::fmt::Debug for TenantEq<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantEq")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

/// The tenant predicate of source `T` (see the module docs).
pub(crate) fn tenant_eq<T: TenantSource>(tenant: TenantId) -> TenantEq<T> {
    TenantEq {
        from: T::qualifier(),
        tenant,
        table: PhantomData,
    }
}

impl<T: TenantSource> Expression for TenantEq<T> {
    type SqlType = Bool;
}

impl<T> QueryFragment<Pg> for TenantEq<T>
where
    T: TenantSource,
    T::Qualifier: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if !out.should_skip_from() {
            self.from.walk_ast(out.reborrow())?;
            out.push_sql(".");
        }
        out.push_identifier(<<T::Table as TenantTable>::TenantColumn as Column>::NAME)?;
        out.push_sql(" = ");
        <T::Table as TenantTable>::KEY_TYPE.push_bind(&self.tenant, &mut out)
    }
}

impl<T: TenantSource + 'static> QueryId for TenantEq<T> {
    type QueryId = TenantEq<T>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<T: TenantSource, QS> AppearsOnTable<QS> for TenantEq<T> where T::KeyColumn: AppearsOnTable<QS> {}
impl<T: TenantSource, QS> SelectableExpression<QS> for TenantEq<T> where
    T::KeyColumn: SelectableExpression<QS>
{
}
impl<T: TenantSource, GB> ValidGrouping<GB> for TenantEq<T>
where
    T::KeyColumn: ValidGrouping<GB>,
{
    type IsAggregate = <T::KeyColumn as ValidGrouping<GB>>::IsAggregate;
}

/// The name of a `diesel::alias!`, as it qualifies the alias's columns: `"alias"`.
#[derive(Debug)]
pub struct AliasName<S>(PhantomData<S>);

impl<S> Default for AliasName<S> {
    fn default() -> Self {
        AliasName(PhantomData)
    }
}
impl<S> Clone for AliasName<S> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<S> Copy for AliasName<S> {}

impl<S: AliasSource> QueryFragment<Pg> for AliasName<S> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_identifier(S::NAME)
    }
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

    diesel::alias!(notes as parents: Parents);

    #[test]
    fn an_alias_is_qualified_by_its_own_name() {
        let t = crate::TenantId::from_uuid(uuid::Uuid::from_u128(7)).expect("not nil");
        assert_eq!(
            sql(&super::tenant_eq::<diesel::query_source::Alias<Parents>>(t)),
            format!("\"parents\".\"tenant_id\" = $1 -- binds: [{t}]")
        );
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
