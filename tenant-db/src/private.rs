//! Items the derive macros use. Not part of the public API: implementing these traits by hand
//! is not supported, and is what seals the public traits.

/// Seals [`Classified`](crate::Classified): implemented only by the derives.
pub trait Sealed {}

/// Seals [`TenantValues`](crate::TenantValues): implemented only by the derive and `values!`.
/// Its items say how the values are written with the tenant column filled in.
pub trait SealedValues<T> {
    /// The values paired with the tenant column's assignment `E`, ready for `INSERT`.
    type WithTenant<E: Clone>;
    /// The values as a diesel changeset, for `UPDATE` and `ON CONFLICT DO UPDATE`.
    type Changes;
    /// An expression holding every value that could read the database, checked against the
    /// scope's probe like a filter: the assignments of `values!`, or [`PlainValues`] for a
    /// derived struct (plain Rust values, nothing to read).
    type Probe;
    /// Pairs the values (each row, for a batch) with the tenant assignment.
    fn with_tenant<E: Clone>(self, tenant: E) -> Self::WithTenant<E>;
    /// The values as a changeset.
    fn changes(self) -> Self::Changes;
}

/// The kind of a tenant table.
#[derive(Debug, Clone, Copy)]
pub struct TenantKind;

/// The kind of a global table.
#[derive(Debug, Clone, Copy)]
pub struct GlobalKind;

impl Sealed for TenantKind {}
impl Sealed for GlobalKind {}

/// The probe of a derived `TenantValues` struct: a bound value, which reads nothing.
pub type PlainValues = diesel::dsl::AsExprOf<bool, diesel::sql_types::Bool>;

/// Compile-time check emitted for each field of a `#[derive(TenantValues)]` struct.
#[inline(always)]
pub const fn assert_writable<T, C>()
where
    C: crate::NonTenantColumn<Table = T>,
{
}

/// Wraps the tuple built by [`values!`](crate::values); only that macro constructs it.
#[derive(Debug, Clone, Copy)]
pub struct Checked<V, T> {
    pub(crate) values: V,
    table: std::marker::PhantomData<T>,
}

impl<V, T> Checked<V, T> {
    /// Used by `values!` after it has checked each column.
    pub fn __new(_table: T, values: V) -> Self {
        Checked {
            values,
            table: std::marker::PhantomData,
        }
    }
}

impl<V, T> SealedValues<T> for Checked<V, T> {
    type WithTenant<E: Clone> = (E, V);
    type Changes = V;
    type Probe = V;
    fn with_tenant<E: Clone>(self, tenant: E) -> (E, V) {
        (tenant, self.values)
    }
    fn changes(self) -> V {
        self.values
    }
}

/// Used by `values!` to tie each column to the table it was given.
#[inline(always)]
pub fn same_table<T, C: diesel::Column<Table = T>>(_table: T, column: C) -> C {
    column
}

pub use diesel;
impl<V, T> crate::TenantValues<T> for Checked<V, T> {}
