//! Every scoped operation sees and changes only its own tenant's rows, as the application role:
//! the compile-time layer and RLS both apply.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::schema as keyed;
mod common;
mod key_kinds;

async fn db(max_size: usize) -> tenant_db::TenantDb {
    common::db_with_rls(max_size).await
}

include!("isolation/cases.rs");

#[tokio::test]
async fn only_statements_of_fixed_text_are_kept_prepared() {
    // Here, not in the cases: it needs the statement cache, which the PgBouncer binary turns
    // off. An escape hatch's raw text can differ at every call: a statement holding it is prepared
    // for that run only, so the connection's statement cache does not grow with each text.
    // An escape hatch around a plain diesel expression has one text, and its statement is kept
    // prepared like any other.
    use diesel::dsl::sql;
    use diesel::sql_types::{Bool, Text};
    use tenant_db::unscoped_expr;
    #[derive(diesel::QueryableByName)]
    struct Prepared {
        #[diesel(sql_type = Text)]
        statement: String,
    }
    let db = db(1).await;
    let (a, _b) = two_tenants(&db).await;
    let kept = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let raw = s
                .query(customers::table)
                .filter(unscoped_expr(sql::<Bool>("customers.id <> 424242")))
                .select(customers::id)
                .load::<i64>(&mut tx)
                .await?;
            let fixed = s
                .query(customers::table)
                .filter(unscoped_expr(customers::email.is_not_null()))
                .select(customers::id)
                .load::<i64>(&mut tx)
                .await?;
            assert_eq!((raw.len(), fixed.len()), (3, 3));
            let prepared: Vec<Prepared> = tx
                .unscoped_load(diesel::sql_query(
                    "SELECT statement FROM pg_prepared_statements",
                ))
                .await?;
            Ok::<_, Error>(
                prepared
                    .into_iter()
                    .map(|p| p.statement)
                    .collect::<Vec<_>>(),
            )
        })
        .await
        .unwrap();
    assert!(
        !kept.iter().any(|s| s.contains("424242")),
        "the raw text's statement was kept: {kept:#?}"
    );
    assert!(
        kept.iter().any(|s| s.contains("IS NOT NULL")),
        "the fixed statement was not kept: {kept:#?}"
    );
}
