include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
pub struct Moved(uuid::Uuid);
// A hand-written `TenantValues` whose assignments name the tenant column.
impl tenant_db::TenantValues<customers::table> for Moved {
    type Insert = (tenant_db::AssignOf<customers::tenant_id, uuid::Uuid>,);
    type Update = (tenant_db::AssignOf<customers::tenant_id, uuid::Uuid>,);
    fn into_insert(self) -> Self::Insert { (tenant_db::assign(customers::tenant_id, self.0),) }
    fn into_update(self) -> Self::Update { (tenant_db::assign(customers::tenant_id, self.0),) }
}
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table).set(Moved(uuid::Uuid::nil())).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
