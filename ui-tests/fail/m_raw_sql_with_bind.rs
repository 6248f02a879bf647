include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::{BigInt, Bool};
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(customers::table)
            .filter(sql::<Bool>("id = ").bind::<BigInt, _>(1_i64).sql(") OR (true"))
            .load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
