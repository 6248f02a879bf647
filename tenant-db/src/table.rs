//! Table classification: tenant tables, global tables, and which columns may be written.

use diesel::sql_types;
use diesel::{Column, ExpressionMethods, Table};

/// A table tenant-db knows: either a [`TenantTable`] or a [`GlobalTable`].
///
/// Implemented by `#[derive(TenantTable)]` / `#[derive(GlobalTable)]`; sealed, not to be
/// implemented by hand. A table that is neither cannot be queried through tenant-db.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not classified for tenant-db",
    label = "neither a tenant table nor a global table",
    note = "add `#[derive(tenant_db::TenantTable)]` (rows belong to a tenant) or \
            `#[derive(tenant_db::GlobalTable)]` (shared reference data) to the table's model"
)]
pub trait Classified: Table + Default + Copy + crate::private::Sealed {
    /// [`TenantKind`](crate::__private::TenantKind) or [`GlobalKind`](crate::__private::GlobalKind).
    type Kind: crate::private::Sealed;
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
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a tenant table",
    label = "tenant-db only writes rows of tenant tables",
    note = "add `#[derive(tenant_db::TenantTable)]` to the table's row model"
)]
pub trait TenantTable: Classified<Kind = crate::private::TenantKind> {
    /// The column holding the tenant id.
    type TenantColumn: Column<Table = Self, SqlType = sql_types::Uuid>
        + ExpressionMethods
        + Default
        + Copy;
    /// The tenant column's name.
    const TENANT_COLUMN: &'static str;
    /// The tenant column.
    fn tenant_column() -> Self::TenantColumn;
}

/// Shared reference data, readable in every tenant transaction and never filtered by tenant.
pub trait GlobalTable: Classified<Kind = crate::private::GlobalKind> {}

/// A column tenant-db may write: any column of a classified table except the tenant column.
///
/// Implemented by the derives for each field of the model; sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be written through tenant-db",
    label = "the tenant column, or a column that is not a field of the table's tenant-db model",
    note = "tenant-db fills the tenant column from the scope on insert and never lets an update \
            change it; other columns become writable by being fields of the \
            `#[derive(TenantTable)]` model"
)]
pub trait NonTenantColumn: Column {}

/// Values tenant-db may insert into, or set on, table `T`: none of their columns is `T`'s
/// tenant column.
///
/// Get it with `#[derive(tenant_db::TenantValues)]` on an `Insertable` / `AsChangeset` struct, or
/// with [`values!`](crate::values) for inline assignments. Sealed.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not known to leave the tenant column of `{T}` alone",
    label = "not checked by tenant-db",
    note = "derive `tenant_db::TenantValues` on the struct, or write inline assignments with \
            `tenant_db::values!(col = value, ...)`; the tenant column is always filled from the \
            scope and can never be set"
)]
pub trait TenantValues<T>: crate::private::SealedValues<T> {}

impl<T, V: TenantValues<T>> crate::private::SealedValues<T> for Vec<V> {
    type WithTenant<E: Clone> = Vec<V::WithTenant<E>>;
    type Changes = Vec<V::Changes>;
    type Probe = V::Probe;
    fn with_tenant<E: Clone>(self, tenant: E) -> Self::WithTenant<E> {
        self.into_iter()
            .map(|row| row.with_tenant(tenant.clone()))
            .collect()
    }
    fn changes(self) -> Self::Changes {
        self.into_iter().map(V::changes).collect()
    }
}
impl<T, V: TenantValues<T>> TenantValues<T> for Vec<V> {}

/// Checked inline assignments for [`insert`](crate::TenantScope::insert) and
/// [`update`](crate::TenantScope::update): `values!(table, col = value, ...)`.
///
/// Each `col` must be a writable ([`NonTenantColumn`]) column of `table`; naming the tenant
/// column is a compile error.
///
/// ```
/// # include!("../doctest_schema.rs");
/// # #[derive(diesel::Queryable, tenant_db::TenantTable)]
/// # #[diesel(table_name = notes)]
/// # struct Note { id: i64, tenant_id: uuid::Uuid, body: String }
/// # fn main() {
/// let v = tenant_db::values!(notes::table, notes::id = 1_i64, notes::body = "hello");
/// # let _ = v;
/// # }
/// ```
#[macro_export]
macro_rules! values {
    ($table:expr, $($col:path = $value:expr),+ $(,)?) => {{
        $( $crate::__private::assert_writable::<_, $col>(); )+
        #[allow(unused_imports)]
        use $crate::__private::diesel::ExpressionMethods as _;
        let table = $table;
        $crate::__private::Checked::__new(
            table,
            ( $( $crate::__private::same_table(table, $col).eq($value), )+ ),
        )
    }};
}
