// A tenant id read from a request header opens no transaction: a transaction acts only for a
// verified `Tenant`, and the message says where one comes from.
include!("../schema.rs");
use tenant_db::{Error, TenantDb, TenantId};

async fn handler(db: TenantDb, header: &str) -> Result<usize, Error> {
    let tenant: TenantId = header.parse()?;
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(s.delete(customers::table).execute(&mut tx).await?)
    })
    .await
}

async fn raw_string(db: TenantDb) -> Result<usize, Error> {
    db.transaction("7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01", async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(s.delete(customers::table).execute(&mut tx).await?)
    })
    .await
}

fn main() {
    reach(|db, _t| async move { handler(db, "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01").await });
    reach(|db, _t| async move { raw_string(db).await });
}
