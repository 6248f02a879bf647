//! Table classification: tenant tables, global tables, and which columns may be written.
//!
//! Two traits describe a schema, and the derives implement them: [`Classified`] (on a table:
//! which [`kind`] it is) and [`ColumnRole`] (on a column: the tenant key or data). They are
//! public so that the derives, which expand in your crate, can implement them; a hand-written
//! impl is checked exactly like a derived one, so it can state nothing a derive could not.
//! Everything that grants access is a blanket impl over them that you cannot implement or
//! override: [`TenantTable`] (the kind is [`kind::Tenant`] and its column is the tenant key),
//! [`GlobalTable`] (the kind is [`kind::Global`] and no column is named `tenant_id`),
//! [`NonTenantColumn`] (the column's role is [`role::Data`]). A column has one role, so the
//! tenant column can never also be data.

use crate::sealed;
use diesel::{Column, ExpressionMethods, Table};

/// The column name tenant-db expects by default, and refuses in a global table.
pub const DEFAULT_TENANT_COLUMN: &str = "tenant_id";

/// A table tenant-db knows: its [`Kind`](Classified::Kind) says whether its rows belong to a
/// tenant ([`kind::Tenant`]) or are shared ([`kind::Global`]).
///
/// Implemented by `#[derive(TenantTable)]` / `#[derive(GlobalTable)]`. A table that is neither
/// cannot be queried through tenant-db.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not classified for tenant-db",
    label = "neither a tenant table nor a global table",
    note = "add `#[derive(tenant_db::TenantTable)]` (rows belong to a tenant) or \
            `#[derive(tenant_db::GlobalTable)]` (shared reference data) to the table's model"
)]
pub trait Classified: Table + Default + Copy {
    /// [`kind::Tenant`]`<tenant column>` or [`kind::Global`].
    type Kind: sealed::KindOf<Self>;
}

/// The kinds of table, for [`Classified::Kind`].
pub mod kind {
    use std::marker::PhantomData;

    /// Rows belong to a tenant; column `C` says which. `C` must have the role
    /// [`TenantKey`](super::role::TenantKey).
    #[derive(Debug, Clone, Copy)]
    pub struct Tenant<C>(PhantomData<C>);

    /// Shared reference data, read unfiltered by every tenant. A table with a column named
    /// `tenant_id` cannot be global.
    #[derive(Debug, Clone, Copy)]
    pub struct Global;

    /// **Opt-out.** Shared reference data that has a column named `tenant_id` which is not its
    /// tenant (a directory of tenants, say): read unfiltered by every tenant. Chosen with
    /// `#[global(unscoped_tenant_column)]`; `grep unscoped` lists it.
    #[derive(Debug, Clone, Copy)]
    pub struct UnscopedGlobal;
}

/// The roles of a column, for [`ColumnRole::Role`].
pub mod role {
    /// The column that says which tenant a row belongs to. Filled from the scope, never written.
    #[derive(Debug, Clone, Copy)]
    pub struct TenantKey;

    /// Any other column of a tenant table: writable through tenant-db.
    #[derive(Debug, Clone, Copy)]
    pub struct Data;
}

/// What a column of a tenant table is: its tenant key, or data. Implemented by
/// `#[derive(TenantTable)]` for every field of the model; one role per column.
pub trait ColumnRole: Column {
    /// [`role::TenantKey`] or [`role::Data`].
    type Role: sealed::Role;
}

/// A table whose rows belong to a tenant, with the column that says which.
///
/// Derive it on the table's row model:
///
/// ```
/// # include!("../doctest_schema.rs");
/// #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
/// #[diesel(table_name = notes)]
/// struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
/// # fn main() {}
/// ```
///
/// Implemented for every [`Classified`] table of kind [`kind::Tenant`]; it cannot be
/// implemented by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenant table",
    label = "tenant-db only writes rows of tenant tables",
    note = "add `#[derive(tenant_db::TenantTable)]` to the table's row model"
)]
pub trait TenantTable: Classified {
    /// The column holding the tenant id.
    type TenantColumn: Column<Table = Self, SqlType: sealed::KeySql>
        + ColumnRole<Role = role::TenantKey>
        + ExpressionMethods
        + Default
        + Copy;
    /// The tenant column's name.
    const TENANT_COLUMN: &'static str;
    /// The tenant column's type, read from its SQL type.
    const KEY_TYPE: crate::KeyType;
    /// The tenant column.
    fn tenant_column() -> Self::TenantColumn;
}

impl<T, C> TenantTable for T
where
    T: Classified<Kind = kind::Tenant<C>>,
    C: Column<Table = T, SqlType: sealed::KeySql>
        + ColumnRole<Role = role::TenantKey>
        + ExpressionMethods
        + Default
        + Copy,
    C::Role: sealed::KeyRole<C>,
{
    type TenantColumn = C;
    const TENANT_COLUMN: &'static str = C::NAME;
    const KEY_TYPE: crate::KeyType = <C::SqlType as sealed::KeySql>::KEY_TYPE;
    fn tenant_column() -> C {
        C::default()
    }
}

/// Shared reference data, readable in every tenant transaction and never filtered by tenant.
///
/// Implemented for every [`Classified`] table of kind [`kind::Global`] (or the opt-out
/// [`kind::UnscopedGlobal`]); it cannot be implemented by hand.
pub trait GlobalTable: Classified {}

impl<T> GlobalTable for T
where
    T: Classified,
    T::Kind: sealed::GlobalKind<T>,
{
}

/// A column tenant-db may write: a column of a tenant table whose role is [`role::Data`].
///
/// Implemented for exactly those columns; it cannot be implemented by hand.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be written through tenant-db",
    label = "the tenant column, or a column that is not a field of the table's tenant-db model",
    note = "tenant-db fills the tenant column from the scope on insert and never lets an update \
            change it; other columns become writable by being fields of the \
            `#[derive(TenantTable)]` model"
)]
pub trait NonTenantColumn: Column + sealed::DataColumn {}

impl<C> sealed::DataColumn for C
where
    C: ColumnRole,
    C::Role: sealed::WritableRole<C>,
    C::Table: TenantTable,
{
}
impl<C> NonTenantColumn for C
where
    C: ColumnRole,
    C::Role: sealed::WritableRole<C>,
    C::Table: TenantTable,
{
}

/// The names of a table's columns, for checks that run when the code is compiled.
/// Implemented for tuples of up to 64 columns (`Table::AllColumns`).
pub trait ColumnNames {
    /// Each column's SQL name, in order.
    const NAMES: &'static [&'static str];
}

macro_rules! column_names_tuple {
    ($($c:ident),+) => {
        impl<$($c: Column),+> ColumnNames for ($($c,)+) {
            const NAMES: &'static [&'static str] = &[$($c::NAME),+];
        }
    };
}
macro_rules! column_names_tuples {
    ($first:ident $(, $rest:ident)*) => {
        column_names_tuple!($first $(, $rest)*);
        column_names_tuples!($($rest),*);
    };
    () => {};
}
column_names_tuples!(
    C64, C63, C62, C61, C60, C59, C58, C57, C56, C55, C54, C53, C52, C51, C50, C49, C48, C47, C46,
    C45, C44, C43, C42, C41, C40, C39, C38, C37, C36, C35, C34, C33, C32, C31, C30, C29, C28, C27,
    C26, C25, C24, C23, C22, C21, C20, C19, C18, C17, C16, C15, C14, C13, C12, C11, C10, C9, C8,
    C7, C6, C5, C4, C3, C2, C1
);

/// Fails compilation if table `T` has a column named `tenant_id`: such a table holds rows of
/// tenants, and declared global it would be read unfiltered by every tenant.
/// `#[derive(GlobalTable)]` calls it; tenant-db checks it again wherever it reads a global
/// table, so a hand-written [`kind::Global`] gets the same check.
pub const fn assert_global<T: Table>()
where
    T::AllColumns: ColumnNames,
{
    let names = <T::AllColumns as ColumnNames>::NAMES;
    let mut i = 0;
    while i < names.len() {
        if str_eq(names[i], DEFAULT_TENANT_COLUMN) {
            panic!(
                "this table has a column named `tenant_id`, so its rows belong to tenants: \
                 derive `TenantTable` for it, not `GlobalTable`. If that column is not a tenant \
                 (a directory of tenants, say), opt out with `#[global(unscoped_tenant_column)]`."
            );
        }
        i += 1;
    }
}

/// Fails compilation unless a model's field of Rust type `F` can hold tenant column `C`:
/// `Uuid` for `uuid`, `i64` for `bigint`, `i32` for `integer`, `String` for `text`.
/// `#[derive(TenantTable)]` calls it.
pub const fn assert_tenant_field<C, F>()
where
    C: Column<SqlType: sealed::KeySql>,
    F: sealed::KeyField<C::SqlType>,
{
}

/// `a == b`, usable in constants.
pub(crate) const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    diesel::table! {
        tenant_rows (id) {
            id -> BigInt,
            name -> Text,
            tenant_id -> Uuid,
        }
    }
    diesel::table! {
        countries (code) {
            code -> Text,
            tenant_idx -> Text,
            name -> Text,
        }
    }

    // `#[derive(GlobalTable)]` runs the check when the code is compiled (the compile-fail
    // tests); here it runs as a plain function, so the tests see each branch.
    #[test]
    #[should_panic(expected = "this table has a column named `tenant_id`")]
    fn a_table_with_a_tenant_column_is_no_global_table() {
        super::assert_global::<tenant_rows::table>();
    }

    #[test]
    fn a_table_without_one_is() {
        super::assert_global::<countries::table>();
    }

    #[test]
    fn str_eq_compares_whole_strings() {
        assert!(super::str_eq("tenant_id", "tenant_id"));
        assert!(!super::str_eq("tenant_id", "tenant_idx"));
        assert!(!super::str_eq("tenant_ix", "tenant_id"));
        assert!(!super::str_eq("", "tenant_id"));
    }
}
