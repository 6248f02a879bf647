//! The isolation cases again, as a `BYPASSRLS` role: RLS cannot hide a mistake here, so these
//! prove the compile-time layer (tenant filters, join conditions, write checks) on its own.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::schema as keyed;
mod common;

async fn db(max_size: usize) -> tenant_db::TenantDb {
    common::db_without_rls(max_size).await
}

include!("isolation/cases.rs");

/// The premise of this binary: its role really sees every tenant's rows when nothing filters.
#[tokio::test]
async fn the_role_bypasses_rls() {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let db = db(2).await;
    let (a, _b) = two_tenants(&db).await;
    let seen: Vec<N> = load_raw(
        &db,
        a,
        "SELECT count(DISTINCT tenant_id) AS n FROM customers",
    )
    .await;
    assert!(
        seen[0].n >= 2,
        "expected rows of several tenants, saw {}",
        seen[0].n
    );
}
