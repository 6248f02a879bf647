include!("../schema.rs");
use diesel::dsl::sql;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<String>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.delete(customers::table)
            .statement()
            .returning(sql::<Text>("(SELECT string_agg(name, ',') FROM customers)"))
            .get_results(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
