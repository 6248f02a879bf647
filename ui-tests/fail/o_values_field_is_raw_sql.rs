include!("../schema.rs");
use diesel::expression::SqlLiteral;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
// A field whose type is a diesel expression carries SQL into the values.
#[derive(Insertable, tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct Smuggler { pub id: i64, pub name: SqlLiteral<Text> }
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let name = diesel::dsl::sql::<Text>("(SELECT string_agg(name, ',') FROM customers)");
        Ok(s.insert(customers::table).values(Smuggler { id: 9, name }).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
