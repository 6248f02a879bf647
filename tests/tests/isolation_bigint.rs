//! The isolation cases on a schema whose tenant columns are `bigint`: as the application role
//! (compile-time layer and RLS) and as a `BYPASSRLS` role (the compile-time layer alone), with
//! the attacks that confuse one kind of tenant key with another.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::schema_bigint as keyed;
mod common;
mod key_kinds;

mod with_rls {
    async fn db(max_size: usize) -> tenant_db::TenantDb {
        crate::common::db_with_rls(max_size).await
    }
    include!("isolation/cases.rs");
}

mod without_rls {
    async fn db(max_size: usize) -> tenant_db::TenantDb {
        crate::common::db_without_rls(max_size).await
    }
    include!("isolation/cases.rs");
}
