include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// `audit` is not classified; sealing must stop a hand-written classification.
impl tenant_db::__private::Sealed for audit::table {}
impl tenant_db::Classified for audit::table { type Kind = tenant_db::__private::GlobalKind; }
impl tenant_db::GlobalTable for audit::table {}
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<String>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.query(audit::table).select(audit::message).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
