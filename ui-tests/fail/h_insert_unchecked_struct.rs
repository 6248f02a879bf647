include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

#[derive(Insertable)]
#[diesel(table_name = customers)]
pub struct Plain { pub id: i64, pub tenant_id: uuid::Uuid, pub name: String }
async fn f(db: TenantDb, t: Tenant) {
    let _ = db.transaction(t, async |mut tx| {
        tx.scope().insert(customers::table)
            .values(Plain { id: 1, tenant_id: uuid::Uuid::nil(), name: "x".into() })
            .execute(&mut tx).await?;
        Ok::<_, Error>(())
    }).await;
}
fn main() {}
