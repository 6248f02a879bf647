include!("../schema.rs");
use diesel::expression::SqlLiteral;
use diesel::sql_types::Text;
use tenant_db::{Error, Tenant, TenantDb};
pub struct Label(pub String);
type Lit = SqlLiteral<Text>;
impl From<Label> for SqlLiteral<Text> {
    fn from(l: Label) -> Self { diesel::dsl::sql::<Text>(&l.0) }
}
// `serialize_as` turns a plain-looking field into SQL text.
#[derive(Insertable, tenant_db::TenantValues)]
#[diesel(table_name = customers)]
pub struct Smuggler { pub id: i64, #[diesel(serialize_as = Lit)] pub name: Label }
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let name = Label("(SELECT string_agg(name, ',') FROM customers)".into());
        Ok(s.insert(customers::table).values(Smuggler { id: 9, name }).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
