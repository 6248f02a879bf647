//! Derive macros for [`tenant-db`](https://docs.rs/tenant-db).
//!
//! Use them through the `tenant_db` crate, which re-exports them:
//! `#[derive(tenant_db::TenantTable)]`, `#[derive(tenant_db::GlobalTable)]` and
//! `#[derive(tenant_db::TenantValues)]`. The expanded code refers to `::tenant_db`.

mod attrs;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Classifies the model's diesel table as a *tenant table*.
///
/// Requires `#[diesel(table_name = …)]`. The tenant column defaults to `tenant_id` and can be
/// renamed with `#[tenant(column = org_id)]`; it must be one of the struct's fields and be a
/// `Uuid` or `TenantId`. Every other field's column becomes writable through tenant-db.
#[proc_macro_derive(TenantTable, attributes(tenant, diesel))]
pub fn derive_tenant_table(input: TokenStream) -> TokenStream {
    expand::tenant_table(input.into()).into()
}

/// Classifies the model's diesel table as a *global table* (shared reference data, readable
/// inside every tenant transaction, never filtered by tenant).
#[proc_macro_derive(GlobalTable, attributes(tenant, diesel))]
pub fn derive_global_table(input: TokenStream) -> TokenStream {
    expand::global_table(input.into()).into()
}

/// Marks a struct (an `Insertable` and/or `AsChangeset`) as values tenant-db may write into its
/// table: each field's column is checked, at compile time, not to be the tenant column.
#[proc_macro_derive(TenantValues, attributes(tenant, diesel))]
pub fn derive_tenant_values(input: TokenStream) -> TokenStream {
    expand::tenant_values(input.into()).into()
}
