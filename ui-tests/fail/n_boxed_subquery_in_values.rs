include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let foreign = customers::table.select(customers::name).into_boxed().single_value().assume_not_null();
        Ok(s.update(customers::table)
            .set(tenant_db::values!(customers::table, customers::name = foreign))
            .execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
