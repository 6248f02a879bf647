include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Bool;
use tenant_db::{Error, Tenant, TenantDb};
// An unbalanced parenthesis ORs the tenant filter away: `WHERE ((true) OR (true) AND tenant_id = $1)`.
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(customers::table).filter(sql::<Bool>("true) OR (true")).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
