include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
diesel::table! { invoices (id) { id -> BigInt, tenant_id -> Uuid, total -> BigInt, } }
diesel::allow_tables_to_appear_in_same_query!(invoices, customers);
// Classified by hand as global: the check the derive runs applies where an alias of it is
// joined, too.
impl tenant_db::Classified for invoices::table { type Kind = tenant_db::kind::Global; }
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<i64>, Error> {
    db.transaction(t, async |mut tx| {
        let i2 = diesel::alias!(invoices as i2);
        Ok(tx.scope().query(customers::table)
            .inner_join(i2.on(i2.field(invoices::id).eq(customers::id)))
            .select(i2.field(invoices::total))
            .load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
