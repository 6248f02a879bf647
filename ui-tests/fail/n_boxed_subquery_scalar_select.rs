include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Option<i64>>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let foreign = orders::table.select(orders::customer_id).order(orders::id.desc()).into_boxed().single_value();
        Ok(s.query(customers::table).select(foreign).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
