include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// A row stream holds its transaction: it cannot be returned from the closure and read after
// the transaction ended.
async fn f(db: TenantDb, t: Tenant) {
    let _rows = db
        .transaction(t, async |mut tx| {
            let s = tx.scope();
            let rows = s
                .query(customers::table)
                .select(customers::name)
                .load_stream::<String>(&mut tx)
                .await?;
            Ok::<_, Error>(rows)
        })
        .await;
}
fn main() {}
