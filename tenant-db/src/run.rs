//! How tenant-db hands a statement to diesel-async: wrapped in [`SqlKeyed`], and only through
//! diesel-async's own blanket implementations.
//!
//! Two things could otherwise run something other than the statement that was built:
//!
//! - **A hand-written `LoadQuery` or `ExecuteDsl`.** diesel-async runs a query through these
//!   traits, which receive the connection. Their blanket implementations cover every diesel
//!   query, but a type of the caller's crate can implement them itself (`LoadQuery` for a row
//!   type of the caller's crate passes the orphan rules, whatever the query type), and would
//!   be handed the transaction's connection, on which it could send anything (`COMMIT; BEGIN;
//!   …` in one message). So wherever tenant-db runs something it requires exactly the
//!   conditions of the blanket implementations ([`Loads`], and `QueryFragment + QueryId + Send`
//!   for statements): a query and row type that meet them are covered by the blanket
//!   implementation, which no hand-written one can then overlap.
//! - **A `QueryId` that lies.** diesel caches each connection's prepared statements by the
//!   query's `QueryId` type when it says it has a static one, without looking at the SQL. A
//!   custom node whose SQL varies while its `QueryId` does not (`#[derive(QueryId)]` on a
//!   struct that renders a field's text, say) would make a later transaction on the same
//!   connection, another tenant's included, run the first one's statement. [`SqlKeyed`] has no
//!   static id, so diesel caches the statement by its SQL text and bind types, which cannot
//!   lie; the statement is still prepared once per connection.

use crate::guard::Guarded;
use diesel::QueryResult;
use diesel::deserialize::FromSqlRow;
use diesel::expression::QueryMetadata;
use diesel::pg::Pg;
use diesel::query_builder::{AsQuery, AstPass, Query, QueryFragment, QueryId};
use diesel::query_dsl::CompatibleType;
use diesel_async::AsyncPgConnection;
use diesel_async::methods::LoadQuery;
use diesel_async::return_futures::{GetResult, LoadFuture};

/// A statement tenant-db runs: the same SQL, cached by diesel under its text rather than its
/// `QueryId` (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct SqlKeyed<Q>(pub(crate) Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for SqlKeyed<Q> {
    fn walk_ast<'b>(&'b self, out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(out)
    }
}

impl<Q> QueryId for SqlKeyed<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for SqlKeyed<Q> {
    type SqlType = Q::SqlType;
}

/// The future of a scoped query that loads every row `U` of `Q` (or tenant-db's refusal).
pub type LoadRows<'t, 'conn, 'q, Q, U> =
    Guarded<'t, LoadFuture<'conn, 'q, SqlKeyed<Q>, &'t AsyncPgConnection, U>>;

/// The future of a scoped query that loads one row `U` of `Q` (or tenant-db's refusal).
pub type LoadOne<'t, 'conn, 'q, Q, U> =
    Guarded<'t, GetResult<'conn, 'q, SqlKeyed<Q>, &'t AsyncPgConnection, U>>;

/// The future of a scoped query's [`load_stream`](crate::Scoped::load_stream): resolves to a
/// [`RowStream`] once the rows start to come.
pub type StreamFuture<'t, 'conn, 'q, Q, U> = Streamed<
    't,
    Guarded<'t, <SqlKeyed<Q> as LoadQuery<'q, &'t AsyncPgConnection, U>>::LoadFuture<'conn>>,
>;

/// The rows of a scoped query as they come, branded `'t`: the stream cannot leave the
/// transaction closure, so the transaction (and its tenant) lasts until it is read or dropped.
/// Dropping it midway is fine: the rest of the rows are discarded and the transaction goes on.
#[must_use = "streams do nothing unless polled"]
pub struct RowStream<'t, S> {
    rows: S,
    _brand: crate::scope::Brand<'t>,
}

impl<S> std::fmt::Debug for RowStream<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream").finish_non_exhaustive()
    }
}

impl<S: futures_util::Stream + Unpin> futures_util::Stream for RowStream<'_, S> {
    type Item = S::Item;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::pin::Pin::new(&mut self.rows).poll_next(cx)
    }
}

/// The future of [`StreamFuture`]: the statement, then its rows as a [`RowStream`].
#[must_use = "futures do nothing unless polled"]
pub struct Streamed<'t, F> {
    run: F,
    _brand: crate::scope::Brand<'t>,
}

impl<F> std::fmt::Debug for Streamed<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed").finish_non_exhaustive()
    }
}

impl<'t, F> Streamed<'t, F> {
    pub(crate) fn new(run: F) -> Self {
        Streamed {
            run,
            _brand: std::marker::PhantomData,
        }
    }
}

impl<'t, F, S> std::future::Future for Streamed<'t, F>
where
    F: std::future::Future<Output = QueryResult<S>> + Unpin,
{
    type Output = QueryResult<RowStream<'t, S>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.run).poll(cx).map(|rows| {
            rows.map(|rows| RowStream {
                rows,
                _brand: std::marker::PhantomData,
            })
        })
    }
}

/// A query whose rows of type `U` diesel-async loads through its blanket `LoadQuery`
/// implementation: exactly that implementation's conditions (see the module docs). Implemented
/// for every such query; it cannot be implemented by hand.
pub trait Loads<'q, U>: sealed::Loads<'q, U> {}

impl<'q, U, T: sealed::Loads<'q, U>> Loads<'q, U> for T {}

mod sealed {
    use super::*;

    /// The conditions of diesel-async's blanket `LoadQuery` implementation, for `Pg`.
    pub trait Loads<'q, U> {}

    impl<'q, T, U, ST> Loads<'q, U> for T
    where
        T: AsQuery + Send + 'q,
        T::Query: QueryFragment<Pg> + QueryId + Send + 'q,
        T::SqlType: CompatibleType<U, Pg, SqlType = ST>,
        U: FromSqlRow<ST, Pg> + Send + 'static,
        Pg: QueryMetadata<T::SqlType>,
        ST: 'static,
    {
    }
}

#[cfg(test)]
mod tests {
    use super::SqlKeyed;
    use diesel::query_builder::QueryId;

    diesel::table! { notes (id) { id -> BigInt, } }

    #[test]
    fn a_keyed_statement_has_no_static_id_and_the_same_sql() {
        use diesel::QueryDsl;
        let q = notes::table.select(notes::id);
        assert!(<SqlKeyed<()> as QueryId>::query_id().is_none());
        assert_eq!(
            diesel::debug_query::<diesel::pg::Pg, _>(&SqlKeyed(q)).to_string(),
            diesel::debug_query::<diesel::pg::Pg, _>(&q).to_string()
        );
    }
}
