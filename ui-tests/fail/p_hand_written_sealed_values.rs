include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
pub struct Moved(uuid::Uuid);
type Assign = diesel::dsl::Eq<customers::tenant_id, uuid::Uuid>;
impl tenant_db::__private::SealedValues<customers::table> for Moved {
    type WithTenant<E: Clone> = (E, (Assign,));
    type Changes = (Assign,);
    type Probe = tenant_db::__private::PlainValues;
    fn with_tenant<E: Clone>(self, tenant: E) -> Self::WithTenant<E> { (tenant, (customers::tenant_id.eq(self.0),)) }
    fn changes(self) -> Self::Changes { (customers::tenant_id.eq(self.0),) }
}
impl tenant_db::TenantValues<customers::table> for Moved {}
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table).set(Moved(uuid::Uuid::nil())).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
