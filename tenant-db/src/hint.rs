//! Compiler messages for the commonest mistakes: a plain diesel query where a scoped one is
//! needed. Nothing here can be called; each item exists so that the compiler's error names
//! the fix.

use crate::tx::TenantTx;

/// Never implemented: the bound of every method of [`PlainQueryHint`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a plain diesel query or handle: tenant-db runs only queries built from the transaction's scope",
    label = "not built from `tx.scope()`",
    note = "inside `db.transaction(tenant, async |mut tx| ...)`, write \
            `let s = tx.scope(); s.query(table).filter(...).load(&mut tx).await?` \
            (or `s.insert`, `s.update`, `s.delete`); SQL tenant-db cannot express goes through \
            the named escape hatches `tx.unscoped_load(..)` / `tx.unscoped_execute(..)`"
)]
pub trait QueryThroughTheScope {}

/// What a [`TenantTx`] dereferences to: a marker that is deliberately not a database
/// connection.
///
/// A plain diesel query run on the tenant handle (`RunQueryDsl::load(query, &mut tx)`) makes
/// diesel-async look through the handle for a connection; it finds this type, and the
/// compiler's error reads "`UseTxScope: AsyncConnectionCore` is not satisfied". The fix is in
/// the name: build the query from `tx.scope()` (`let s = tx.scope();
/// s.query(table)...load(&mut tx)`), or, for SQL tenant-db cannot express, use the named
/// escape hatches `tx.unscoped_load` / `tx.unscoped_execute`. It has no methods and holds
/// nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct UseTxScope {
    _private: (),
}

impl std::ops::Deref for TenantTx<'_> {
    type Target = UseTxScope;
    fn deref(&self) -> &UseTxScope {
        self.hint()
    }
}

impl std::ops::DerefMut for TenantTx<'_> {
    fn deref_mut(&mut self) -> &mut UseTxScope {
        self.hint_mut()
    }
}

/// In tenant-db's prelude (unnamed): when diesel's `QueryDsl` / `RunQueryDsl` are not
/// imported, `table.filter(..)`, `query.load(&mut tx)` and their neighbours resolve here, and
/// the error says to build the query from the scope instead of suggesting an import. When
/// diesel's traits are imported, theirs win (they take `self`, these `&self`).
pub trait PlainQueryHint: Sized {
    /// See the trait docs.
    fn filter<P>(&self, _predicate: P)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn or_filter<P>(&self, _predicate: P)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn find<K>(&self, _key: K)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn select<S>(&self, _selection: S)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn order<O>(&self, _order: O)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn order_by<O>(&self, _order: O)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn limit(&self, _limit: i64)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn count(&self)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn inner_join<R>(&self, _rhs: R)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn left_join<R>(&self, _rhs: R)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn load<C>(&self, _conn: C)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn get_result<C>(&self, _conn: C)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn get_results<C>(&self, _conn: C)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn first<C>(&self, _conn: C)
    where
        Self: QueryThroughTheScope,
    {
    }
    /// See the trait docs.
    fn execute<C>(&self, _conn: C)
    where
        Self: QueryThroughTheScope,
    {
    }
}

impl<T: diesel::query_builder::QueryId> PlainQueryHint for T {}
