//! The row-level-security SQL for tenant tables (see the README, "How the three layers work").
//!
//! [`policy_sql`] produces, for one tenant table, idempotent SQL that enables and forces RLS
//! and creates two policies:
//!
//! - `tenant_db_access`, **permissive**, for all commands: grants access (RLS grants nothing
//!   without a permissive policy);
//! - `tenant_db_isolation`, **restrictive**, for all commands, `USING` and `WITH CHECK`:
//!   `tenant_col = (SELECT tenant_db.current_tenant()::uuid)`. Being restrictive, it is AND-ed
//!   with every permissive policy, including ones added later; the scalar subquery is
//!   evaluated once per statement (an InitPlan); `tenant_db.current_tenant()` returns the
//!   tenant the transaction was opened for, sealed so that no later statement can change it
//!   (see [`crate::seal`]), or NULL, which matches nothing.

use crate::{KeyType, TenantTable};
use diesel::Table;
use diesel::pg::Pg;
use diesel::query_builder::{QueryBuilder, QueryFragment};

/// The SQL expression the isolation policy compares a `uuid` tenant column with (see
/// [`KeyType::current_tenant_expr`] for the others).
pub const CURRENT_TENANT_EXPR: &str = KeyType::Uuid.current_tenant_expr();

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

/// Quotes an SQL string literal.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Quotes an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Splits `"a"."b"` (diesel's quoting) into its unquoted parts.
pub(crate) fn split_quoted(quoted: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = quoted.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                current.push('"');
            }
            ('"', _) => in_quotes = !in_quotes,
            ('.', false) => parts.push(std::mem::take(&mut current)),
            (c, _) => current.push(c),
        }
    }
    parts.push(current);
    parts
}

/// The RLS SQL for table `table` (already quoted) with tenant column `column` (unquoted) of
/// type `key`.
pub fn policy_sql_for(table: &str, column: &str, key: KeyType) -> String {
    let col = quote_ident(column);
    let current = key.current_tenant_expr();
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;\n\
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;\n\
         DROP POLICY IF EXISTS tenant_db_isolation ON {table};\n\
         CREATE POLICY tenant_db_isolation ON {table} AS RESTRICTIVE FOR ALL TO PUBLIC \
         USING ({col} = {current}) WITH CHECK ({col} = {current});\n\
         DROP POLICY IF EXISTS tenant_db_access ON {table};\n\
         CREATE POLICY tenant_db_access ON {table} AS PERMISSIVE FOR ALL TO PUBLIC \
         USING (true) WITH CHECK (true);\n"
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
        T::KEY_TYPE,
    ))
}

/// An index that leads with the tenant column, created only if the table has none yet (a
/// primary key `(tenant_id, id)` already is one). `table` is quoted, `column` is not.
pub fn tenant_index_sql_for(table: &str, column: &str) -> String {
    format!(
        "DO $tenant_db$ BEGIN\n\
           IF NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a\n\
                            ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]\n\
                          WHERE i.indrelid = {table_lit}::regclass AND a.attname = {column_lit}) THEN\n\
             EXECUTE format('CREATE INDEX ON %s (%I)', {table_lit}, {column_lit});\n\
           END IF;\n\
         END $tenant_db$;\n",
        table_lit = quote_literal(table),
        column_lit = quote_literal(column),
    )
}

/// Everything a migration needs for tenant table `T`, as one idempotent script: the sealed
/// tenant setting's functions ([`seal::setup_sql`](crate::seal::setup_sql), shared by all
/// tables), RLS enabled and forced, the two policies of [`policy_sql`], and an index leading
/// with the tenant column.
///
/// Put its output in a migration (`diesel migration generate`, then paste it into `up.sql`),
/// or run it from a Rust migration. Keys are yours to get right, and `doctor` checks them:
/// primary and unique keys, and foreign keys to tenant tables, include the tenant column.
pub fn migration_sql<T>() -> Result<String, diesel::result::Error>
where
    T: TenantTable,
    T::FromClause: QueryFragment<Pg>,
{
    let table = table_name::<T>()?;
    let column = <T::TenantColumn as diesel::Column>::NAME;
    Ok(format!(
        "{}{}{}",
        crate::seal::setup_sql(),
        policy_sql_for(&table, column, T::KEY_TYPE),
        tenant_index_sql_for(&table, column)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn policy_is_restrictive_and_fail_closed() {
        let sql = super::policy_sql_for("\"notes\"", "tenant_id", super::KeyType::Uuid);
        assert!(sql.contains("FORCE ROW LEVEL SECURITY"));
        assert!(sql.contains("AS RESTRICTIVE FOR ALL"));
        assert!(sql.contains(
            "USING (\"tenant_id\" = (SELECT tenant_db.current_tenant()::uuid)) WITH CHECK (\"tenant_id\" = (SELECT tenant_db.current_tenant()::uuid))"
        ));
        let sql = super::policy_sql_for("\"ledgers\"", "account_id", super::KeyType::BigInt);
        assert!(sql.contains(
            "USING (\"account_id\" = (SELECT tenant_db.current_tenant('int')::bigint)) WITH CHECK (\"account_id\" = (SELECT tenant_db.current_tenant('int')::bigint))"
        ));
    }
}
