include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
// A scalar subquery in the selection reads every tenant's names.
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<String>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(customers::table)
            .select(sql::<Text>("(SELECT string_agg(name, ',') FROM customers)"))
            .load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
