include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};
// A second column type for `customers.tenant_id`, declared by hand with the role of data.
#[derive(Debug, Clone, Copy, Default, diesel::query_builder::QueryId)]
pub struct OwnerOrg;
impl diesel::expression::Expression for OwnerOrg { type SqlType = diesel::sql_types::Uuid; }
impl diesel::Column for OwnerOrg { type Table = customers::table; const NAME: &'static str = "tenant_id"; }
impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for OwnerOrg {
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>) -> diesel::QueryResult<()> {
        out.push_identifier("tenant_id")
    }
}
impl<QS> diesel::expression::AppearsOnTable<QS> for OwnerOrg {}
impl<QS> diesel::expression::SelectableExpression<QS> for OwnerOrg {}
impl<GB> diesel::expression::ValidGrouping<GB> for OwnerOrg { type IsAggregate = diesel::expression::is_aggregate::No; }
impl tenant_db::ColumnRole for OwnerOrg { type Role = tenant_db::role::Data; }
async fn f(db: TenantDb, t: Tenant) -> Result<usize, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        Ok(s.update(customers::table).set(tenant_db::values!(customers::table, OwnerOrg = uuid::Uuid::nil())).execute(&mut tx).await?)
    }).await
}
fn main() { reach(f) }
