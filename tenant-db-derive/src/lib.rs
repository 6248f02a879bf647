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
/// `Uuid` or `TenantId`. It implements `tenant_db::Classified` for the table (kind
/// `Tenant<tenant column>`) and `tenant_db::ColumnRole` for each field's column: the tenant
/// column is the tenant key, every other column is data and becomes writable through
/// tenant-db. Derive it once per table, in the crate that declares the table.
#[proc_macro_derive(TenantTable, attributes(tenant, global, diesel))]
pub fn derive_tenant_table(input: TokenStream) -> TokenStream {
    expand::tenant_table(input.into()).into()
}

/// Classifies the model's diesel table as a *global table* (shared reference data, readable
/// inside every tenant transaction, never filtered by tenant).
///
/// A table with a column named `tenant_id` holds tenants' rows and is refused, at the field
/// if the model maps that column and otherwise when the expansion compiles. A table whose
/// `tenant_id` column is not an owner (a directory of tenants, say) opts out with
/// `#[global(unscoped_tenant_column)]`.
#[proc_macro_derive(GlobalTable, attributes(tenant, global, diesel))]
pub fn derive_global_table(input: TokenStream) -> TokenStream {
    expand::global_table(input.into()).into()
}

/// Makes a struct values tenant-db may write into its table (`#[diesel(table_name = …)]`):
/// each field is an assignment to its column, checked at compile time not to be the tenant
/// column, with its value checked like a filter. It follows diesel's `Insertable` /
/// `AsChangeset` rules for the field attributes it accepts (`column_name`, `embed`,
/// `serialize_as`, `skip_insertion`, `skip_update`, `treat_none_as_null`,
/// `treat_none_as_default_value`; the struct's `primary_key` columns are not updated) and
/// refuses the others.
#[proc_macro_derive(TenantValues, attributes(tenant, global, diesel))]
pub fn derive_tenant_values(input: TokenStream) -> TokenStream {
    expand::tenant_values(input.into()).into()
}
