include!("../schema.rs");
use diesel_async::methods::{ExecuteDsl, LoadQuery};
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use tenant_db::{Error, Tenant, TenantDb};

// diesel-async hands the connection to `ExecuteDsl` / `LoadQuery`; a hand-written impl would
// get the transaction's connection and could send `COMMIT; BEGIN; SELECT tenant_db.enter(…)`.
// tenant-db runs only what diesel-async's own blanket impls cover.

/// Not a query: an `ExecuteDsl` of its own.
struct Reenter;

impl<'t> ExecuteDsl<&'t AsyncPgConnection> for Reenter {
    fn execute<'conn, 'query>(
        _query: Self,
        conn: &'conn mut &'t AsyncPgConnection,
    ) -> futures_util::future::BoxFuture<'t, diesel::QueryResult<usize>>
    where
        Self: 'query,
    {
        let mut raw: &'t AsyncPgConnection = *conn;
        Box::pin(async move {
            raw.batch_execute("COMMIT; BEGIN; SELECT tenant_db.enter('other')").await?;
            Ok(0)
        })
    }
}

/// A row type whose `LoadQuery` is its own, for any statement tenant-db runs.
struct Evil;

impl<'t, 'q, Q: Send + 'q> LoadQuery<'q, &'t AsyncPgConnection, Evil> for tenant_db::SqlKeyed<Q> {
    type LoadFuture<'conn> = futures_util::future::BoxFuture<'conn, diesel::QueryResult<Self::Stream<'conn>>> where &'t AsyncPgConnection: 'conn;
    type Stream<'conn> = futures_util::stream::Empty<diesel::QueryResult<Evil>> where &'t AsyncPgConnection: 'conn;
    fn internal_load<'conn>(self, conn: &'conn mut &'t AsyncPgConnection) -> Self::LoadFuture<'conn> {
        let mut raw: &'t AsyncPgConnection = *conn;
        Box::pin(async move {
            raw.batch_execute("COMMIT; BEGIN; SELECT tenant_db.enter('other')").await?;
            Ok(futures_util::stream::empty())
        })
    }
}

async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        tx.unscoped_execute(Reenter).await?;
        let s = tx.scope();
        let _rows: Vec<Evil> = s.query(customers::table).load(&mut tx).await?;
        let _raw: Vec<Evil> = tx.unscoped_load(diesel::sql_query("SELECT 1")).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
