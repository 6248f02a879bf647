//! Inserts and upserts on tenant tables: the tenant column is filled from the scope, and an
//! `ON CONFLICT` clause can only ever meet a row of the same tenant.
//!
//! One statement node, [`InsertRows`], serves plain inserts and upserts:
//!
//! ```text
//! INSERT INTO table (tenant_col, …) VALUES ($tenant, …)
//!     [ON CONFLICT (tenant_col, key…) DO NOTHING
//!     |ON CONFLICT (tenant_col, key…) DO UPDATE SET … WHERE table.tenant_col = $tenant]
//!     [RETURNING …]
//! ```
//!
//! The conflict target always starts with the tenant column and every inserted row carries the
//! scope's tenant, so the only row a conflict can find is one of the same tenant: an upsert can
//! neither update another tenant's row nor reveal that one exists. The `WHERE` on `DO UPDATE`
//! says the same thing a second time, for the database to check.

use crate::probe::{ScopeSafe, audit};
use crate::query::{TenantAssign, TenantFilter, tenant_assign, tenant_filter};
use crate::sealed::Writes;
use crate::write::ScopedStatement;
use crate::{NonTenantColumn, TenantScope, TenantTable, TenantValues};
use diesel::expression::{
    AppearsOnTable, Expression, NonAggregate, SelectableExpression, ValidGrouping, is_aggregate,
};
use diesel::insertable::CanInsertInSingleQuery;
use diesel::pg::Pg;
use diesel::query_builder::{AsChangeset, AstPass, Query, QueryFragment, QueryId};
use diesel::result::{EmptyChangeset, Error::QueryBuilderError};
use diesel::{Column, Insertable, QueryResult, Table};

/// `INSERT INTO table`, waiting for its values.
#[must_use = "call `.values(..)`"]
#[derive(Debug, Clone, Copy)]
pub struct ScopedInsert<'t, T> {
    table: T,
    scope: TenantScope<'t>,
}

impl<'t> TenantScope<'t> {
    /// `INSERT INTO table …`; the tenant column is filled from this scope.
    pub fn insert<T: TenantTable>(&self, table: T) -> ScopedInsert<'t, T> {
        ScopedInsert {
            table,
            scope: *self,
        }
    }
}

/// The rows `V` with the scope's tenant column added, ready for `INSERT`.
pub type WithTenant<T, V> =
    <<V as TenantValues<T>>::Insert as Writes<T>>::WithTenant<TenantAssign<T>>;

/// The `VALUES` part diesel builds for rows `V` of table `T`, tenant column included.
pub type RowsOf<T, V> = <WithTenant<T, V> as Insertable<T>>::Values;

/// The plain `INSERT` statement for rows `V` into `T`.
pub type InsertOf<T, V> = InsertRows<T, RowsOf<T, V>>;

impl<'t, T: TenantTable> ScopedInsert<'t, T> {
    /// The row (or `Vec` of rows) to insert; the tenant column is filled from the scope.
    ///
    /// Run it with `execute`, add `returning`, or turn it into an upsert with
    /// [`on_conflict`](ScopedStatement::on_conflict).
    pub fn values<V>(self, values: V) -> ScopedStatement<'t, InsertOf<T, V>>
    where
        V: TenantValues<T>,
        V::Insert: Writes<T>,
        <V::Insert as Writes<T>>::Probe: ScopeSafe<'t>,
        WithTenant<T, V>: Insertable<T>,
    {
        audit!(<V::Insert as Writes<T>>::Probe);
        let tenant = tenant_assign::<T>(self.scope.tenant_id());
        let values = values.into_insert();
        let scope = self.scope.checked_values(&values);
        ScopedStatement::new(
            InsertRows {
                into: self.table.from_clause(),
                rows: values.with_tenant(tenant).values(),
                conflict: NoConflict,
                returning: NoReturning,
            },
            scope,
        )
    }
}

/// An `INSERT` built from a scope: `rows` already carry the tenant column; `conflict` is
/// [`NoConflict`] or an [`OnConflict`] clause; `returning` is [`NoReturning`] or [`Returning`].
pub struct InsertRows<T: Table, U, C = NoConflict, Ret = NoReturning> {
    into: T::FromClause,
    rows: U,
    conflict: C,
    returning: Ret,
}

impl<T, U, C, Ret> QueryFragment<Pg> for InsertRows<T, U, C, Ret>
where
    T: Table,
    T::FromClause: QueryFragment<Pg>,
    U: QueryFragment<Pg> + CanInsertInSingleQuery<Pg>,
    C: QueryFragment<Pg>,
    Ret: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // What diesel does for an empty batch: a statement that touches nothing.
        if self.rows.rows_to_insert() == Some(0) {
            out.push_sql("SELECT 1 FROM ");
            self.into.walk_ast(out.reborrow())?;
            out.push_sql(" WHERE 1=0");
            return Ok(());
        }
        out.push_sql("INSERT INTO ");
        self.into.walk_ast(out.reborrow())?;
        out.push_sql(" ");
        self.rows.walk_ast(out.reborrow())?;
        self.conflict.walk_ast(out.reborrow())?;
        self.returning.walk_ast(out.reborrow())?;
        Ok(())
    }
}

impl<T, U, C, Ret> QueryId for InsertRows<T, U, C, Ret>
where
    T: Table + QueryId + 'static,
    U: QueryId,
    C: QueryId,
    Ret: QueryId,
{
    type QueryId = InsertRows<T, U::QueryId, C::QueryId, Ret::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = T::HAS_STATIC_QUERY_ID
        && U::HAS_STATIC_QUERY_ID
        && C::HAS_STATIC_QUERY_ID
        && Ret::HAS_STATIC_QUERY_ID;
}

impl<T, U, C, E> Query for InsertRows<T, U, C, Returning<E>>
where
    T: Table,
    E: Expression + SelectableExpression<T> + NonAggregate,
{
    type SqlType = E::SqlType;
}

/// No `RETURNING` clause.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct NoReturning;

impl QueryFragment<Pg> for NoReturning {
    fn walk_ast<'b>(&'b self, _: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Ok(())
    }
}

/// `RETURNING expr`.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct Returning<E>(E);

impl<E: QueryFragment<Pg>> QueryFragment<Pg> for Returning<E> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(" RETURNING ");
        self.0.walk_ast(out.reborrow())
    }
}

/// No `ON CONFLICT` clause: a conflict is an error.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct NoConflict;

impl QueryFragment<Pg> for NoConflict {
    fn walk_ast<'b>(&'b self, _: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        Ok(())
    }
}

/// The columns of a conflict target, besides the tenant column tenant-db puts first: one
/// writable column of `T`, or a tuple of up to four. Implemented by tenant-db for exactly
/// those; it cannot be implemented by hand (it writes the names into the statement).
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a conflict key of `{T}`",
    label = "expected a column of `{T}` other than its tenant column, or a tuple of them",
    note = "name the key without the tenant column (`on_conflict(table::id)`): tenant-db puts \
            the tenant column first, so the conflict target is `(tenant_col, id)` and matches \
            a unique key that leads with the tenant column"
)]
pub trait ConflictKey<T>: crate::sealed::ConflictColumns<T> {}

impl<T, K: crate::sealed::ConflictColumns<T>> ConflictKey<T> for K {}

impl<T, C> crate::sealed::ConflictColumns<T> for C
where
    C: NonTenantColumn + Column<Table = T>,
{
    fn walk_names(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
        out.push_sql(", ");
        out.push_identifier(C::NAME)
    }

    fn names() -> Vec<&'static str> {
        vec![C::NAME]
    }
}

macro_rules! conflict_key_tuple {
    ($($c:ident),+) => {
        impl<T, $($c),+> crate::sealed::ConflictColumns<T> for ($($c,)+)
        where
            $($c: NonTenantColumn + Column<Table = T>,)+
        {
            fn walk_names(out: &mut AstPass<'_, '_, Pg>) -> QueryResult<()> {
                $(
                    out.push_sql(", ");
                    out.push_identifier($c::NAME)?;
                )+
                Ok(())
            }

            fn names() -> Vec<&'static str> {
                vec![$($c::NAME),+]
            }
        }
    };
}
conflict_key_tuple!(C1);
conflict_key_tuple!(C1, C2);
conflict_key_tuple!(C1, C2, C3);
conflict_key_tuple!(C1, C2, C3, C4);

/// `ON CONFLICT (tenant_col, key…) action`.
#[derive(Debug, Clone, Copy)]
pub struct OnConflict<T, K, A> {
    key: std::marker::PhantomData<(T, K)>,
    action: A,
}

impl<T, K, A> QueryFragment<Pg> for OnConflict<T, K, A>
where
    T: TenantTable,
    K: ConflictKey<T>,
    A: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(" ON CONFLICT (");
        out.push_identifier(<T::TenantColumn as Column>::NAME)?;
        <K as crate::sealed::ConflictColumns<T>>::walk_names(&mut out)?;
        out.push_sql(") ");
        self.action.walk_ast(out.reborrow())
    }
}

impl<T: 'static, K: 'static, A: QueryId> QueryId for OnConflict<T, K, A> {
    type QueryId = OnConflict<T, K, A::QueryId>;
    const HAS_STATIC_QUERY_ID: bool = A::HAS_STATIC_QUERY_ID;
}

/// `DO NOTHING`.
#[derive(Debug, Clone, Copy, QueryId)]
pub struct DoNothing;

impl QueryFragment<Pg> for DoNothing {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("DO NOTHING");
        Ok(())
    }
}

/// `DO UPDATE SET changes WHERE table.tenant_col = $tenant`.
#[derive(Debug, Clone, Copy)]
pub struct DoUpdate<Changes, F> {
    changes: Changes,
    tenant: F,
}

impl<Changes, F> QueryFragment<Pg> for DoUpdate<Changes, F>
where
    Changes: QueryFragment<Pg>,
    F: QueryFragment<Pg>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if self.changes.is_noop(out.backend())? {
            return Err(QueryBuilderError(Box::new(EmptyChangeset)));
        }
        // As diesel does for UPDATE: a changeset may skip `None` fields, so the SQL can vary.
        out.unsafe_to_cache_prepared();
        out.push_sql("DO UPDATE SET ");
        self.changes.walk_ast(out.reborrow())?;
        out.push_sql(" WHERE ");
        self.tenant.walk_ast(out.reborrow())
    }
}

impl<Changes, F> QueryId for DoUpdate<Changes, F> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// `INSERT … ON CONFLICT (tenant_col, key…)`, waiting for its action.
#[must_use = "call `.do_nothing()` or `.do_update().set(..)`"]
pub struct ScopedOnConflict<'t, T: Table, U, K> {
    insert: InsertRows<T, U>,
    key: std::marker::PhantomData<K>,
    scope: TenantScope<'t>,
}

/// `INSERT … ON CONFLICT (tenant_col, key…) DO UPDATE`, waiting for `set`.
#[must_use = "call `.set(..)`"]
pub struct ScopedDoUpdate<'t, T: Table, U, K>(ScopedOnConflict<'t, T, U, K>);

/// An upsert statement: rows `U` into `T`, conflict key `K`, action `A`.
pub type Upsert<T, U, K, A> = InsertRows<T, U, OnConflict<T, K, A>>;

impl<'t, T: TenantTable, U> ScopedStatement<'t, InsertRows<T, U>> {
    /// Turns the insert into an upsert on the unique key `(tenant_col, key…)`: name `key`
    /// without the tenant column (one column, or a tuple of up to four), tenant-db puts it
    /// first. The table needs a unique constraint or index on exactly those columns.
    pub fn on_conflict<K: ConflictKey<T>>(self, key: K) -> ScopedOnConflict<'t, T, U, K> {
        let _ = key;
        let (insert, scope) = self.into_parts();
        ScopedOnConflict {
            insert,
            key: std::marker::PhantomData,
            scope,
        }
    }
}

impl<'t, T: TenantTable, U, K> ScopedOnConflict<'t, T, U, K> {
    fn with<A>(self, action: A) -> ScopedStatement<'t, Upsert<T, U, K, A>> {
        let InsertRows { into, rows, .. } = self.insert;
        ScopedStatement::new(
            InsertRows {
                into,
                rows,
                conflict: OnConflict {
                    key: std::marker::PhantomData,
                    action,
                },
                returning: NoReturning,
            },
            self.scope,
        )
    }

    /// `ON CONFLICT (…) DO NOTHING`: rows whose key this tenant already has are skipped.
    pub fn do_nothing(self) -> ScopedStatement<'t, Upsert<T, U, K, DoNothing>> {
        self.with(DoNothing)
    }

    /// `ON CONFLICT (…) DO UPDATE`: call [`set`](ScopedDoUpdate::set) with the new values.
    pub fn do_update(self) -> ScopedDoUpdate<'t, T, U, K> {
        ScopedDoUpdate(self)
    }
}

/// The `DO UPDATE` action for values `V` of table `T`.
pub type DoUpdateOf<T, V> = DoUpdate<
    <<<V as TenantValues<T>>::Update as Writes<T>>::Diesel as AsChangeset>::Changeset,
    TenantFilter<T>,
>;

impl<'t, T: TenantTable, U, K> ScopedDoUpdate<'t, T, U, K> {
    /// The values to set on the existing row; like an update's, they cannot name the tenant
    /// column. Use [`excluded`] to refer to the row that was proposed.
    pub fn set<V>(self, values: V) -> ScopedStatement<'t, Upsert<T, U, K, DoUpdateOf<T, V>>>
    where
        V: TenantValues<T>,
        V::Update: Writes<T>,
        <V::Update as Writes<T>>::Probe: ScopeSafe<'t>,
        <V::Update as Writes<T>>::Diesel: AsChangeset<Target = T>,
    {
        audit!(<V::Update as Writes<T>>::Probe);
        let tenant = tenant_filter::<T>(self.0.scope.tenant_id());
        let values = values.into_update();
        let mut on_conflict = self.0;
        on_conflict.scope = on_conflict.scope.checked_values(&values);
        on_conflict.with(DoUpdate {
            changes: values.into_diesel().as_changeset(),
            tenant,
        })
    }
}

impl<'t, T, U, C> ScopedStatement<'t, InsertRows<T, U, C>>
where
    T: Table,
{
    /// Adds `RETURNING returns`.
    pub fn returning<E>(self, returns: E) -> ScopedStatement<'t, InsertRows<T, U, C, Returning<E>>>
    where
        E: ScopeSafe<'t> + Expression + SelectableExpression<T> + NonAggregate,
    {
        audit!(E);
        let (insert, scope) = self.into_parts();
        let scope = scope.checked(&returns, crate::guard::Shape::List);
        ScopedStatement::new(
            InsertRows {
                into: insert.into,
                rows: insert.rows,
                conflict: insert.conflict,
                returning: Returning(returns),
            },
            scope,
        )
    }
}

/// `excluded.column`: the value proposed for `column` by the row an upsert tried to insert,
/// for use in [`ScopedDoUpdate::set`]: `values!(t, t::name = excluded(t::name))`.
pub fn excluded<C: Column>(column: C) -> Excluded<C> {
    Excluded(column)
}

/// The expression [`excluded`] returns.
#[derive(Debug, Clone, Copy)]
pub struct Excluded<C>(C);

impl<C: Column> Expression for Excluded<C> {
    type SqlType = C::SqlType;
}

impl<C: Column> QueryFragment<Pg> for Excluded<C> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("excluded.");
        out.push_identifier(C::NAME)
    }
}

impl<C: Column + 'static> QueryId for Excluded<C> {
    type QueryId = Self;
    const HAS_STATIC_QUERY_ID: bool = true;
}

// Readable wherever its column is: on its table (diesel's changeset check) and in the probe
// source (tenant-db's check, which diesel's own `excluded` cannot pass).
impl<C: Column + AppearsOnTable<QS>, QS> AppearsOnTable<QS> for Excluded<C> {}

impl<C: Column> ValidGrouping<()> for Excluded<C> {
    type IsAggregate = is_aggregate::Never;
}
