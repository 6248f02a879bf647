include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// `owner_org` is the tenant column under another Rust name.
diesel::table! { accounts (id) { id -> BigInt, tenant_id -> Uuid, #[sql_name = "tenant_id"] owner_org -> Uuid, } }
#[derive(Queryable, tenant_db::TenantTable)]
#[diesel(table_name = accounts)]
#[allow(dead_code)]
pub struct Account { pub id: i64, pub tenant_id: uuid::Uuid, pub owner_org: uuid::Uuid }
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(accounts::table).set(tenant_db::values!(accounts::table, accounts::owner_org = uuid::Uuid::nil())).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
