//! The command built into a crate of models: it knows the tables the derives registered.

#![allow(clippy::unwrap_used, missing_docs)]

use std::process::ExitCode;
use tenant_db::registry::Registry;

mod models {
    #![allow(dead_code, unreachable_pub)]
    diesel::table! {
        invoices (org_id, id) { org_id -> BigInt, id -> BigInt, }
    }
    #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
    #[diesel(table_name = invoices)]
    #[tenant(column = org_id)]
    pub struct Invoice {
        pub org_id: i64,
        pub id: i64,
    }
}

#[test]
fn rls_sql_of_the_registered_tables() {
    let registry = Registry::collected_under(module_path!());
    let code = tenant_db_cli::run_with(["tenant-db", "rls-sql"], registry);
    assert_eq!(code, ExitCode::SUCCESS);
    // What it printed is the registry's migration SQL; `--module` narrows to nothing here.
    let code = tenant_db_cli::run_with(
        ["tenant-db", "rls-sql", "--module", "no_such_module"],
        Registry::collected_under(module_path!()),
    );
    assert_eq!(code, ExitCode::from(2));
    let sql = Registry::collected_under(module_path!())
        .unwrap()
        .migration_sql();
    assert!(sql.contains("CREATE POLICY tenant_db_isolation ON \"invoices\""));
    assert!(sql.contains("\"org_id\" = (SELECT tenant_db.current_tenant('int')::bigint)"));
}
