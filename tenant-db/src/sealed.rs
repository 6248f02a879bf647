//! The sealed half of every public trait: traits in this private module cannot be named, so
//! they cannot be implemented, outside tenant-db. Each public trait that grants something
//! requires one of them, and tenant-db implements them only for what it has checked.

use crate::table::{ColumnNames, ColumnRole, kind, role};
use diesel::{Column, Table, sql_types};

/// A table kind valid for table `T`: [`kind::Tenant`] with a tenant-key column of `T`, or a
/// global kind.
pub trait KindOf<T> {}

impl<T, C> KindOf<T> for kind::Tenant<C>
where
    C: Column<Table = T> + ColumnRole,
    C::Role: KeyRole<C>,
{
}

/// The role of a tenant column: [`role::TenantKey`] only.
#[diagnostic::on_unimplemented(
    message = "`{C}` is not the tenant column of its table",
    label = "its role is data",
    note = "derive `TenantTable` on the table's model and name the column with \
            `#[tenant(column = ...)]`"
)]
pub trait KeyRole<C> {}
impl<C> KeyRole<C> for role::TenantKey {}
impl<T: Table> KindOf<T> for kind::Global where T::AllColumns: ColumnNames {}
impl<T: Table> KindOf<T> for kind::UnscopedGlobal {}

/// The global kinds.
pub trait GlobalKind<T> {}
impl<T: Table> GlobalKind<T> for kind::Global where T::AllColumns: ColumnNames {}
impl<T: Table> GlobalKind<T> for kind::UnscopedGlobal {}

/// The kind markers themselves (for the traits that dispatch on a table's kind).
pub trait Kind {}
impl<C> Kind for kind::Tenant<C> {}
impl Kind for kind::Global {}
impl Kind for kind::UnscopedGlobal {}

/// The column roles.
pub trait Role {}
impl Role for role::TenantKey {}
impl Role for role::Data {}

/// A column with the role [`role::Data`] in a tenant table.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be declared writable by hand",
    label = "not a data column of a tenant table",
    note = "tenant-db makes the columns of a `#[derive(TenantTable)]` model writable, except \
            its tenant column"
)]
pub trait DataColumn {}

/// The role of a column tenant-db may write: [`role::Data`] only.
#[diagnostic::on_unimplemented(
    message = "`{C}` is the tenant column: tenant-db fills it from the scope and never writes it",
    label = "the tenant column cannot be written",
    note = "leave it out of the values; an insert takes it from the transaction's tenant, and \
            an update can never move a row to another tenant"
)]
pub trait WritableRole<C> {}
impl<C> WritableRole<C> for role::Data {}

/// Written values checked column by column: [`Assign`](crate::values::Assign)s of
/// [`NonTenantColumn`](crate::NonTenantColumn)s of `T`, `Option`s, tuples and `Vec`s of them
/// (implemented in [`crate::values`]).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a set of checked assignments to `{T}`",
    label = "each written column must be a non-tenant column of this table",
    note = "derive `tenant_db::TenantValues`, or use `tenant_db::values!(table, col = value, ...)`"
)]
pub trait Writes<T> {
    /// The written expressions, checked against the scope like a filter.
    type Probe;
    /// The assignments as diesel writes them (`Insertable` and `AsChangeset`).
    type Diesel;
    /// The row, or each row of a batch, with the tenant assignment `X` first.
    type WithTenant<X: Clone>;
    /// The assignments as diesel writes them.
    fn into_diesel(self) -> Self::Diesel;
    /// The row(s) with the tenant assignment first.
    fn with_tenant<X: Clone>(self, tenant: X) -> Self::WithTenant<X>;
    /// The first written expression [`crate::guard`] refuses, if any.
    fn refusal(&self) -> Option<crate::guard::Refusal>;
}

/// The columns of a conflict key, written into `ON CONFLICT (tenant_col, …)` (implemented in
/// [`crate::insert`] for non-tenant columns and tuples of them).
pub trait ConflictColumns<T> {
    /// Writes the key's column names, each preceded by `, `.
    fn walk_names(
        out: &mut diesel::query_builder::AstPass<'_, '_, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()>;

    /// The key's column names, unquoted.
    fn names() -> Vec<&'static str>;
}

/// The SQL types a tenant column may have, each with its [`KeyType`](crate::KeyType).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the type of a tenant column",
    label = "not a tenant key type",
    note = "a tenant column is `NOT NULL` and of type `uuid` (`Uuid`), `bigint` (`BigInt`), \
            `integer` (`Integer`) or `text`/`varchar` (`Text`)"
)]
pub trait KeySql: sql_types::SingleValue {
    /// The column type.
    const KEY_TYPE: crate::KeyType;
}
impl KeySql for sql_types::Uuid {
    const KEY_TYPE: crate::KeyType = crate::KeyType::Uuid;
}
impl KeySql for sql_types::BigInt {
    const KEY_TYPE: crate::KeyType = crate::KeyType::BigInt;
}
impl KeySql for sql_types::Integer {
    const KEY_TYPE: crate::KeyType = crate::KeyType::Integer;
}
impl KeySql for sql_types::Text {
    const KEY_TYPE: crate::KeyType = crate::KeyType::Text;
}

/// The Rust types a model's tenant field may have for a tenant column of SQL type `S`.
#[diagnostic::on_unimplemented(
    message = "a field of type `{Self}` cannot hold a tenant column of SQL type `{S}`",
    label = "the tenant field's type",
    note = "a tenant field is `uuid::Uuid` for `Uuid`, `i64` for `BigInt`, `i32` for `Integer`, \
            `String` for `Text`; never an `Option`"
)]
pub trait KeyField<S> {}
impl KeyField<sql_types::Uuid> for uuid::Uuid {}
impl KeyField<sql_types::BigInt> for i64 {}
impl KeyField<sql_types::Integer> for i32 {}
impl KeyField<sql_types::Text> for String {}

/// The verified tenants: [`Tenant`](crate::Tenant) and references to it.
pub trait VerifiedTenant {}

/// The tenant contexts: a verified tenant or a scope.
pub trait ContextTenant {}

/// A query source tenant-db can scope: a classified table, or a `diesel::alias!` of one (each
/// alias is scoped on its own, like a second table).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not classified for tenant-db",
    label = "neither a tenant table nor a global table, nor a `diesel::alias!` of one",
    note = "add `#[derive(tenant_db::TenantTable)]` (rows belong to a tenant) or \
            `#[derive(tenant_db::GlobalTable)]` (shared reference data) to the table's model"
)]
pub trait Source {
    /// The classified table this source reads.
    type Table: crate::Classified;
}
impl<T: crate::Classified> Source for T {
    type Table = T;
}
impl<S> Source for diesel::query_source::Alias<S>
where
    S: diesel::query_source::AliasSource<Target: crate::Classified>,
{
    type Table = S::Target;
}

/// A [`Source`] whose rows belong to tenants: how its tenant column is named in SQL.
pub trait TenantSource: Source<Table: crate::TenantTable> {
    /// The tenant column as read from this source (for diesel's placement checks).
    type KeyColumn;
    /// What qualifies the tenant column: the table (`"schema"."table"`) or the alias's name.
    type Qualifier;
    /// The qualifier.
    fn qualifier() -> Self::Qualifier;
}
impl<T: crate::TenantTable> TenantSource for T {
    type KeyColumn = T::TenantColumn;
    type Qualifier = T::FromClause;
    fn qualifier() -> T::FromClause {
        diesel::QuerySource::from_clause(&T::default())
    }
}
impl<S> TenantSource for diesel::query_source::Alias<S>
where
    S: diesel::query_source::AliasSource<Target: crate::TenantTable>,
{
    type KeyColumn =
        diesel::query_source::AliasedField<S, <S::Target as crate::TenantTable>::TenantColumn>;
    type Qualifier = crate::predicate::AliasName<S>;
    fn qualifier() -> Self::Qualifier {
        crate::predicate::AliasName::default()
    }
}
