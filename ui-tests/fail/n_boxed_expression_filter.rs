include!("../schema.rs");
use diesel::dsl::sql;
use diesel::expression::BoxableExpression;
use diesel::pg::Pg;
use diesel::sql_types::Bool;
use tenant_db::{Error, Tenant, TenantDb};
// A boxed expression hides its contents from the type system.
async fn f(db: TenantDb, t: Tenant) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        let hidden: Box<dyn BoxableExpression<_, Pg, SqlType = Bool>> = Box::new(sql::<Bool>("true) OR (true"));
        Ok(s.query(customers::table).filter(hidden).load(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
