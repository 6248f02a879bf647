include!("../schema.rs");
use diesel::dsl::{count_star, sql};
use diesel::sql_types::{Bool, Text};
use tenant_db::{Error, Tenant, TenantDb};
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<(String, i64)>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(customers::table)
            .group_by(customers::name)
            .having(sql::<Bool>("true) OR (true"))
            .select((customers::name, count_star()))
            .load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
