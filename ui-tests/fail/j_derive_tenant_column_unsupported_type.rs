// Tenant keys are uuid, bigint, integer or text: a smallint or numeric column is refused where
// the table is used.
diesel::table! { customers (id) { id -> BigInt, tenant_id -> SmallInt, name -> Text, } }
#[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
#[diesel(table_name = customers)]
pub struct Customer { pub id: i64, pub tenant_id: i16, pub name: String }
fn main() {}
