//! The row-level-security SQL for tenant tables (see the README, "How the three layers work").
//!
//! [`policy_sql`] produces, for one tenant table, idempotent SQL that enables and forces RLS
//! and creates two policies:
//!
//! - `tenant_db_access`, **permissive**, for all commands: grants access (RLS grants nothing
//!   without a permissive policy);
//! - `tenant_db_isolation`, **restrictive**, for all commands, `USING` and `WITH CHECK`:
//!   `tenant_col = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid)`.
//!   Being restrictive, it is AND-ed with every permissive policy, including ones added later;
//!   the scalar subquery is evaluated once per statement (an InitPlan); with no setting, or
//!   the empty setting a finished `SET LOCAL` leaves behind, it compares with NULL and matches
//!   nothing.

use crate::TenantTable;
use diesel::Table;
use diesel::pg::Pg;
use diesel::query_builder::{QueryBuilder, QueryFragment};

/// The SQL expression the isolation policy compares the tenant column with.
pub const CURRENT_TENANT_EXPR: &str =
    "(SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid)";

/// The quoted, schema-qualified (if declared so) name of table `T`, as diesel writes it.
pub fn table_name<T>() -> Result<String, diesel::result::Error>
where
    T: Table + Default,
    T::FromClause: QueryFragment<Pg>,
{
    let mut builder = diesel::pg::PgQueryBuilder::default();
    T::default().from_clause().to_sql(&mut builder, &Pg)?;
    Ok(builder.finish())
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The RLS SQL for table `table` (already quoted) with tenant column `column` (unquoted).
pub fn policy_sql_for(table: &str, column: &str) -> String {
    let col = quote_ident(column);
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS tenant_db_access ON {table};\n\
         CREATE POLICY tenant_db_access ON {table} AS PERMISSIVE FOR ALL TO PUBLIC \
         USING (true) WITH CHECK (true);\n\
         DROP POLICY IF EXISTS tenant_db_isolation ON {table};\n\
         CREATE POLICY tenant_db_isolation ON {table} AS RESTRICTIVE FOR ALL TO PUBLIC \
         USING ({col} = {CURRENT_TENANT_EXPR}) WITH CHECK ({col} = {CURRENT_TENANT_EXPR});\n"
    )
}

/// The RLS SQL for tenant table `T`; run it as the tables' owner, in a migration.
pub fn policy_sql<T>() -> Result<String, diesel::result::Error>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    Ok(policy_sql_for(
        &table_name::<T>()?,
        <T::TenantColumn as diesel::Column>::NAME,
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_is_restrictive_and_fail_closed() {
        let sql = super::policy_sql_for("\"notes\"", "tenant_id");
        assert!(sql.contains("FORCE ROW LEVEL SECURITY"));
        assert!(sql.contains("AS RESTRICTIVE FOR ALL"));
        assert!(sql.contains(
            "USING (\"tenant_id\" = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid)) WITH CHECK"
        ));
    }
}
