//! Scoped subqueries in writes and selections: `UPDATE … WHERE id IN (scoped subquery)` and
//! `DELETE` the same way, and a correlated scalar subquery in a selection (each customer's
//! order count): the subquery, built from the scope, reads this tenant's rows only (two tenants
//! with the same ids and the same orders).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::schema::*;

async fn names(db: &TenantDb, tenant: Tenant) -> Vec<String> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(
            s.query(customers::table)
                .select(customers::name)
                .order(customers::id)
                .load(&mut tx)
                .await?,
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn update_and_delete_in_a_scoped_subquery_stay_in_the_tenant() {
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let (updated, deleted) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            // Customers with an order over 2.00: customer 2 (order 12, 4.00).
            let big = s
                .query(orders::table)
                .filter(orders::total_cents.gt(200))
                .select(orders::customer_id)
                .into_subquery();
            let updated = s
                .update(customers::table)
                .filter(customers::id.eq_any(big))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "big spender"
                ))
                .execute(&mut tx)
                .await?;
            // Customers without orders: customer 3.
            let with_orders = s
                .query(orders::table)
                .select(orders::customer_id)
                .into_subquery();
            let deleted = s
                .delete(customers::table)
                .filter(diesel::dsl::not(customers::id.eq_any(with_orders)))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((updated, deleted))
        })
        .await
        .unwrap();
    // Customer 1 also has an order over 2.00 (order 11, 2.50).
    assert_eq!((updated, deleted), (2, 1));
    assert_eq!(names(&db, a).await, ["big spender", "big spender"]);
    assert_eq!(names(&db, b).await, ["c1", "c2", "c3"]);
}

#[tokio::test]
async fn a_correlated_scalar_subquery_in_a_selection_counts_this_tenants_rows() {
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    // B gets two more orders for customer 1; A's counts must not see them.
    db.transaction(b, async |mut tx| {
        let s = tx.scope();
        s.insert(orders::table)
            .values(vec![
                NewOrder {
                    id: 20,
                    customer_id: 1,
                    total_cents: 1,
                    country_code: "FR".into(),
                },
                NewOrder {
                    id: 21,
                    customer_id: 1,
                    total_cents: 1,
                    country_code: "FR".into(),
                },
            ])
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let counts = async |tenant: Tenant| {
        db.transaction(tenant, async |mut tx| {
            let s = tx.scope();
            let per_customer = tenant_db::scalar(
                s.query(orders::table)
                    .filter(orders::customer_id.eq(customers::id))
                    .count()
                    .into_subquery(),
            );
            let rows: Vec<(i64, Option<i64>)> = s
                .query(customers::table)
                .select((customers::id, per_customer))
                .order(customers::id)
                .load(&mut tx)
                .await?;
            Ok::<_, Error>(rows)
        })
        .await
        .unwrap()
    };
    assert_eq!(
        counts(a).await,
        vec![(1, Some(2)), (2, Some(1)), (3, Some(0))]
    );
    assert_eq!(
        counts(b).await,
        vec![(1, Some(4)), (2, Some(1)), (3, Some(0))]
    );
}

diesel::define_sql_function! {
    /// PostgreSQL's `set_config`, which no scoped statement may call.
    fn set_config(
        name: diesel::sql_types::Text,
        value: diesel::sql_types::Text,
        local: diesel::sql_types::Bool,
    ) -> diesel::sql_types::Text;
}

#[tokio::test]
async fn a_scalar_subquery_with_a_refused_part_is_refused() {
    let db = db_with_rls(2).await;
    let (a, _b) = two_tenants(&db).await;
    let outcome = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let forged = tenant_db::scalar(
                s.query(orders::table)
                    .select(set_config("app.current_tenant", "someone else", true))
                    .limit(1)
                    .into_subquery(),
            );
            let rows: Vec<(i64, Option<String>)> = s
                .query(customers::table)
                .select((customers::id, forged))
                .load(&mut tx)
                .await?;
            Ok::<_, Error>(rows)
        })
        .await;
    assert!(matches!(outcome, Err(Error::Refused(_))), "{outcome:?}");
}

#[tokio::test]
async fn a_refused_part_is_found_in_an_optional_assignment_and_in_a_batch() {
    // The same check reads an assignment wherever it sits: wrapped in `Some`, or in the rows
    // of a batch insert.
    use tenant_db::guard::Refusal;
    use tenant_db::values::{Values, assign};
    fn refusal<T, E: Into<Error>>(outcome: Result<T, E>) -> Option<Refusal> {
        match outcome.map_err(Into::into) {
            Err(Error::Refused(refused)) => Some(refused.reason),
            _ => None,
        }
    }
    let db = db_without_rls(2).await;
    let (a, _b) = two_tenants(&db).await;
    let forged = || set_config("app.current_tenant", "someone else", true);
    let reasons = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let optional = s
                .update(customers::table)
                .filter(customers::id.eq(1))
                .set(Values::new((Some(assign(customers::name, forged())),)))
                .execute(&mut tx)
                .await;
            let batch = s
                .insert(customers::table)
                .values(
                    [7, 8]
                        .map(|id| {
                            tenant_db::values!(
                                customers::table,
                                customers::id = id,
                                customers::name = forged()
                            )
                        })
                        .to_vec(),
                )
                .execute(&mut tx)
                .await;
            Ok::<_, Error>([refusal(optional), refusal(batch)])
        })
        .await
        .unwrap();
    assert_eq!(reasons, [Some(Refusal::SessionFunction("set_config")); 2]);
    assert_eq!(names(&db, a).await, ["c1", "c2", "c3"]);
}
