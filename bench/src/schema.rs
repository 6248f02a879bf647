//! The benchmark's tables: `items` (tenant table for the latency runs), `items_unsealed` (the
//! same rows under the plain `app.current_tenant` policy, for the pgbench reference) and `big`
//! (1M rows across 100 tenants, for the RLS cost).

use tenant_db::{TenantTable, TenantValues};
use uuid::Uuid;

diesel::table! {
    items (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        title -> Text,
        score -> BigInt,
    }
}

/// A row of `items`.
#[derive(Debug, Clone, diesel::Queryable, diesel::Selectable, TenantTable)]
#[diesel(table_name = items)]
pub(crate) struct Item {
    pub(crate) tenant_id: Uuid,
    pub(crate) id: i64,
    pub(crate) title: String,
    pub(crate) score: i64,
}

/// A new row of `items`.
#[derive(Debug, Clone, diesel::Insertable, TenantValues)]
#[diesel(table_name = items)]
pub(crate) struct NewItem {
    pub(crate) id: i64,
    pub(crate) title: String,
    pub(crate) score: i64,
}

/// The DDL, run as the owner.
pub(crate) fn schema_sql() -> String {
    let rls =
        |sql: Result<String, diesel::result::Error>| sql.unwrap_or_else(|e| format!("-- {e}"));
    format!(
        "CREATE TABLE IF NOT EXISTS items (tenant_id uuid NOT NULL, id bigint NOT NULL,
             title text NOT NULL, score bigint NOT NULL, PRIMARY KEY (tenant_id, id));
         {}
         CREATE TABLE IF NOT EXISTS items_unsealed (tenant_id uuid NOT NULL, id bigint NOT NULL,
             title text NOT NULL, score bigint NOT NULL, PRIMARY KEY (tenant_id, id));
         ALTER TABLE items_unsealed ENABLE ROW LEVEL SECURITY;
         ALTER TABLE items_unsealed FORCE ROW LEVEL SECURITY;
         DROP POLICY IF EXISTS reference_access ON items_unsealed;
         CREATE POLICY reference_access ON items_unsealed USING (true) WITH CHECK (true);
         DROP POLICY IF EXISTS reference_isolation ON items_unsealed;
         CREATE POLICY reference_isolation ON items_unsealed AS RESTRICTIVE
             USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid));",
        rls(tenant_db::rls::migration_sql::<items::table>()),
    )
}
