include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(customers::table).order(sql::<Text>("(SELECT max(name) FROM customers)")).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
