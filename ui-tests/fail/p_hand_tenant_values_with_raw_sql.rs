include!("../schema.rs");
use diesel::expression::SqlLiteral;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
pub struct Renamed;
// A hand-written `TenantValues` whose value is raw SQL.
impl tenant_db::TenantValues<customers::table> for Renamed {
    type Insert = (tenant_db::AssignOf<customers::name, SqlLiteral<Text>>,);
    type Update = (tenant_db::AssignOf<customers::name, SqlLiteral<Text>>,);
    fn into_insert(self) -> Self::Insert { (tenant_db::assign(customers::name, diesel::dsl::sql::<Text>("'x'")),) }
    fn into_update(self) -> Self::Update { (tenant_db::assign(customers::name, diesel::dsl::sql::<Text>("'x' WHERE true --")),) }
}
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table).set(Renamed).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
