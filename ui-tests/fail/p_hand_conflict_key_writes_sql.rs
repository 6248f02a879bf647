include!("../schema.rs");
use diesel::pg::Pg;
use diesel::query_builder::AstPass;
// A conflict key writes its columns' names into `ON CONFLICT (…)`; it cannot be implemented by
// hand (this one would write `DO UPDATE SET "tenant_id" = …` there).
pub struct ById;
impl tenant_db::ConflictKey<customers::table> for ById {
    fn walk_names(out: &mut AstPass<'_, '_, Pg>) -> diesel::QueryResult<()> {
        out.push_sql(", \"id\") DO UPDATE SET \"tenant_id\" = 'b' --");
        Ok(())
    }
}
fn main() {}
