include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
#[derive(Insertable, AsChangeset)]
#[diesel(table_name = customers)]
pub struct Owner { pub tenant_id: uuid::Uuid }
// The embedded struct's columns are written too: here, the tenant column.
#[derive(Insertable, AsChangeset, tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct Smuggler { pub id: i64, #[diesel(embed)] pub name: Owner }
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table)
            .set(Smuggler { id: 1, name: Owner { tenant_id: uuid::Uuid::nil() } })
            .execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
