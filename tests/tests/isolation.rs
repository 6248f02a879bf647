//! Every scoped operation sees and changes only its own tenant's rows, as the application role:
//! the compile-time layer and RLS both apply.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::schema as keyed;
mod common;
mod key_kinds;

async fn db(max_size: usize) -> tenant_db::TenantDb {
    common::db_with_rls(max_size).await
}

include!("isolation/cases.rs");
