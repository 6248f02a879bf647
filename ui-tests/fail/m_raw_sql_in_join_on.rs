include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Bool;
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<(i64, String)>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(orders::table)
            .inner_join(customers::table.on(sql::<Bool>("true) OR (true")))
            .select((orders::id, customers::name))
            .load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
