//! Values tenant-db writes: [`TenantValues`] (derive it, or use [`values!`](crate::values)).
//!
//! A value struct becomes a tuple of [`Assign`]`<column, expression>`, and that tuple is what
//! tenant-db checks and what it writes: every column must be a [`NonTenantColumn`] of the
//! table, and every expression must pass the same scope check as a filter. The check is a
//! sealed trait over those tuples, so it applies to derived and hand-written values alike and
//! cannot be switched off; there is no second description of the columns that could
//! disagree with the SQL.

use crate::NonTenantColumn;
use crate::guard::Refusal;
use crate::sealed::Writes;
use diesel::expression::{AsExpression, Expression, TypedExpressionType};
use diesel::pg::Pg;
use diesel::query_builder::QueryFragment;
use diesel::sql_types::SqlType;
use diesel::{Column, ExpressionMethods, dsl};

/// Values tenant-db may insert into, or set on, table `T`.
///
/// Derive it with `#[derive(tenant_db::TenantValues)]` on a struct with
/// `#[diesel(table_name = ...)]` (its fields are the columns, as for diesel's `Insertable` /
/// `AsChangeset`), or write inline assignments with [`values!`](crate::values). The tenant
/// column is always filled from the scope and can never be set: the [`Insert`] and [`Update`]
/// forms are checked column by column when they are written.
///
/// [`Insert`]: TenantValues::Insert
/// [`Update`]: TenantValues::Update
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not known to leave the tenant column of `{T}` alone",
    label = "not checked by tenant-db",
    note = "derive `tenant_db::TenantValues` on the struct, or write inline assignments with \
            `tenant_db::values!(table, col = value, ...)`; the tenant column is always filled \
            from the scope and can never be set"
)]
pub trait TenantValues<T> {
    /// What `INSERT` writes: [`Assign`]s, `Option<Assign>` (`None` writes the column's
    /// default), and tuples of them.
    type Insert;
    /// What `UPDATE` sets: as [`Insert`](TenantValues::Insert), where `None` leaves the
    /// column as it is.
    type Update;
    /// The values as written by `INSERT`.
    fn into_insert(self) -> Self::Insert;
    /// The values as set by `UPDATE`.
    fn into_update(self) -> Self::Update;
}

/// `column = expression`, one assignment of written values. Build it with [`assign`].
#[derive(Debug, Clone, Copy)]
pub struct Assign<C, E> {
    column: C,
    expr: E,
}

/// The [`Assign`] of value `V` (any Rust value or diesel expression of the column's type) to
/// column `C`.
pub type AssignOf<C, V> = Assign<C, <V as AsExpression<<C as Expression>::SqlType>>::Expression>;

/// `column = value`.
pub fn assign<C, V>(column: C, value: V) -> AssignOf<C, V>
where
    C: Column,
    C::SqlType: SqlType + TypedExpressionType,
    V: AsExpression<C::SqlType>,
{
    Assign {
        column,
        expr: value.as_expression(),
    }
}

/// `column = value` for a column of `table` (what [`values!`](crate::values) writes).
pub fn assign_in<T, C, V>(table: T, column: C, value: V) -> AssignOf<C, V>
where
    C: Column<Table = T>,
    C::SqlType: SqlType + TypedExpressionType,
    V: AsExpression<C::SqlType>,
{
    let _ = table;
    assign(column, value)
}

/// Assignments written inline: what [`values!`](crate::values) returns.
#[derive(Debug, Clone, Copy)]
pub struct Values<A>(A);

impl<A> Values<A> {
    /// Wraps a tuple of [`Assign`]s; each is checked when it is written.
    pub fn new(assignments: A) -> Self {
        Values(assignments)
    }
}

impl<T, A> TenantValues<T> for Values<A> {
    type Insert = A;
    type Update = A;
    fn into_insert(self) -> A {
        self.0
    }
    fn into_update(self) -> A {
        self.0
    }
}

impl<T, V: TenantValues<T>> TenantValues<T> for Vec<V> {
    type Insert = Vec<V::Insert>;
    type Update = Vec<V::Update>;
    fn into_insert(self) -> Self::Insert {
        self.into_iter().map(V::into_insert).collect()
    }
    fn into_update(self) -> Self::Update {
        self.into_iter().map(V::into_update).collect()
    }
}

/// Compile-time check that column `C` of table `T` may be written; `#[derive(TenantValues)]`
/// and [`values!`](crate::values) run it in a constant, so that values naming the tenant
/// column fail where they are written. Besides the column's role, it compares SQL names: a
/// second column type for the tenant column (`#[sql_name = "tenant_id"] owner -> Uuid` in
/// `table!`, or a hand-written `Column`) is refused too.
#[inline(always)]
pub const fn assert_writable<T, C>()
where
    T: crate::TenantTable,
    C: NonTenantColumn + Column<Table = T>,
{
    assert!(
        !crate::table::str_eq(C::NAME, T::TENANT_COLUMN),
        "this column has the SQL name of the table's tenant column: tenant-db fills the tenant \
         column from the scope and never writes it"
    );
}

// The structural check (see the module docs).

impl<T, C, E> Writes<T> for Assign<C, E>
where
    T: crate::TenantTable,
    C: NonTenantColumn + Column<Table = T> + ExpressionMethods,
    C::SqlType: SqlType + TypedExpressionType,
    E: Expression<SqlType = C::SqlType> + QueryFragment<Pg>,
{
    type Probe = E;
    type Diesel = dsl::Eq<C, E>;
    type WithTenant<X: Clone> = (X, Self::Diesel);
    fn into_diesel(self) -> Self::Diesel {
        const { assert_writable::<T, C>() };
        self.column.eq(self.expr)
    }
    fn with_tenant<X: Clone>(self, tenant: X) -> Self::WithTenant<X> {
        (tenant, self.into_diesel())
    }
    fn refusal(&self) -> Option<Refusal> {
        crate::guard::check_part(&self.expr, crate::guard::Shape::Expression)
    }
}

impl<T, W: Writes<T>> Writes<T> for Option<W> {
    type Probe = W::Probe;
    type Diesel = Option<W::Diesel>;
    type WithTenant<X: Clone> = (X, Self::Diesel);
    fn into_diesel(self) -> Self::Diesel {
        self.map(W::into_diesel)
    }
    fn with_tenant<X: Clone>(self, tenant: X) -> Self::WithTenant<X> {
        (tenant, self.into_diesel())
    }
    fn refusal(&self) -> Option<Refusal> {
        self.as_ref().and_then(W::refusal)
    }
}

impl<T, W: Writes<T>> Writes<T> for Vec<W> {
    type Probe = W::Probe;
    type Diesel = Vec<W::Diesel>;
    type WithTenant<X: Clone> = Vec<(X, W::Diesel)>;
    fn into_diesel(self) -> Self::Diesel {
        self.into_iter().map(W::into_diesel).collect()
    }
    fn with_tenant<X: Clone>(self, tenant: X) -> Self::WithTenant<X> {
        self.into_iter()
            .map(|row| (tenant.clone(), row.into_diesel()))
            .collect()
    }
    fn refusal(&self) -> Option<Refusal> {
        self.iter().find_map(W::refusal)
    }
}

macro_rules! writes_tuple {
    ($($w:ident . $i:tt),+) => {
        impl<T, $($w: Writes<T>),+> Writes<T> for ($($w,)+) {
            type Probe = ($($w::Probe,)+);
            type Diesel = ($($w::Diesel,)+);
            type WithTenant<X: Clone> = (X, Self::Diesel);
            fn into_diesel(self) -> Self::Diesel {
                ($(self.$i.into_diesel(),)+)
            }
            fn with_tenant<X: Clone>(self, tenant: X) -> Self::WithTenant<X> {
                (tenant, self.into_diesel())
            }
            fn refusal(&self) -> Option<Refusal> {
                None$(.or_else(|| self.$i.refusal()))+
            }
        }
    };
}
writes_tuple!(W0.0);
writes_tuple!(W0.0, W1.1);
writes_tuple!(W0.0, W1.1, W2.2);
writes_tuple!(W0.0, W1.1, W2.2, W3.3);
writes_tuple!(W0.0, W1.1, W2.2, W3.3, W4.4);
writes_tuple!(W0.0, W1.1, W2.2, W3.3, W4.4, W5.5);
writes_tuple!(W0.0, W1.1, W2.2, W3.3, W4.4, W5.5, W6.6);
writes_tuple!(W0.0, W1.1, W2.2, W3.3, W4.4, W5.5, W6.6, W7.7);
writes_tuple!(W0.0, W1.1, W2.2, W3.3, W4.4, W5.5, W6.6, W7.7, W8.8);
writes_tuple!(W0.0, W1.1, W2.2, W3.3, W4.4, W5.5, W6.6, W7.7, W8.8, W9.9);
writes_tuple!(
    W0.0, W1.1, W2.2, W3.3, W4.4, W5.5, W6.6, W7.7, W8.8, W9.9, W10.10
);
writes_tuple!(
    W0.0, W1.1, W2.2, W3.3, W4.4, W5.5, W6.6, W7.7, W8.8, W9.9, W10.10, W11.11
);

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
        $( const { $crate::values::assert_writable::<_, $col>() }; )+
        let table = $table;
        $crate::values::Values::new(( $( $crate::values::assign_in(table, $col, $value), )+ ))
    }};
}
