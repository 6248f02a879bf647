// The isolation cases, included by `isolation.rs` (as the application role: compile-time layer
// and RLS) and `isolation_without_rls.rs` (as a BYPASSRLS role: the compile-time layer alone).
// Each includer defines `async fn db(max_size: usize) -> TenantDb`.

use crate::common::*;
use diesel::dsl::{count_star, sum};
use tenant_db::prelude::*;
use tenant_db::{Error, Tenant, TenantId, excluded, exists, values};
use crate::keyed::*;

type R<T> = Result<T, Error>;

/// Why tenant-db refused the statement, if it did (`None` for any other outcome).
fn refusal<T, E: Into<Error>>(outcome: Result<T, E>) -> Option<tenant_db::guard::Refusal> {
    match outcome.map_err(Into::into) {
        Err(Error::Refused(refused)) => Some(refused.reason),
        _ => None,
    }
}

/// Customer 99, "only-b": a row only tenant `b` has.
async fn insert_only_b_row(db: &TenantDb, b: Tenant) {
    insert_customer(db, b, 99, "only-b").await;
}

#[tokio::test]
async fn load_filter_or_filter_see_only_own_rows() {
    let db = db(4).await;
    let (a, b) = two_tenants(&db).await;
    let rows: Vec<Customer> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .order(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert!(rows.iter().all(|c| c.tenant_id == row_key(&a)));

    // `or_filter` must not widen the tenant filter: c1 OR c2 exist in both tenants.
    let ids: Vec<(Key, i64)> = db
        .transaction(b, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .filter(customers::name.eq("c1"))
                    .or_filter(customers::name.eq("c2"))
                    .select((customers::tenant_id, customers::id))
                    .order(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(ids, vec![(row_key(&b), 1), (row_key(&b), 2)]);
}

#[tokio::test]
async fn by_id_access_to_another_tenants_row_reads_and_changes_nothing() {
    let db = db(4).await;
    let (a, b) = two_tenants(&db).await;
    insert_only_b_row(&db, b).await;

    let (found, first, updated, deleted) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let found: Option<Customer> = s
                .query(customers::table)
                .filter(customers::id.eq(99))
                .get_result(&mut tx)
                .await
                .optional()?;
            let first: Option<String> = s
                .query(customers::table)
                .filter(customers::name.eq("only-b"))
                .select(customers::name)
                .first(&mut tx)
                .await
                .optional()?;
            let updated = s
                .update(customers::table)
                .filter(customers::id.eq(99))
                .set(values!(customers::table, customers::name = "hijacked"))
                .execute(&mut tx)
                .await?;
            let deleted = s
                .delete(customers::table)
                .filter(customers::id.eq(99))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((found, first, updated, deleted))
        })
        .await
        .unwrap();
    assert_eq!((found, first, updated, deleted), (None, None, 0, 0));

    let name: String = db
        .transaction(b, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .filter(customers::id.eq(99))
                    .select(customers::name)
                    .get_result(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(name, "only-b");
}

#[tokio::test]
async fn count_exists_order_limit_offset_distinct_group_by() {
    let db = db(4).await;
    let (a, _b) = two_tenants(&db).await;
    let out = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let count: i64 = s.query(orders::table).count().get_result(&mut tx).await?;
            let any_jp = s
                .query(orders::table)
                .filter(orders::country_code.eq("JP"))
                .exists(&mut tx)
                .await?;
            let none = s
                .query(orders::table)
                .filter(orders::total_cents.gt(10_000))
                .exists(&mut tx)
                .await?;
            let page: Vec<i64> = s
                .query(orders::table)
                .select(orders::id)
                .order(orders::total_cents.desc())
                .limit(2)
                .offset(1)
                .load(&mut tx)
                .await?;
            let mut countries: Vec<String> = s
                .query(orders::table)
                .select(orders::country_code)
                .distinct()
                .load(&mut tx)
                .await?;
            countries.sort();
            let grouped: Vec<(i64, i64)> = s
                .query(orders::table)
                .group_by(orders::customer_id)
                .select((orders::customer_id, count_star()))
                .order(orders::customer_id)
                .load(&mut tx)
                .await?;
            let as_select: Vec<Order> = s
                .query(orders::table)
                .select(Order::as_select())
                .order(orders::id)
                .load(&mut tx)
                .await?;
            Ok::<_, Error>((
                count,
                any_jp,
                none,
                page,
                countries,
                grouped,
                as_select.len(),
            ))
        })
        .await
        .unwrap();
    assert_eq!(out.0, 3);
    assert!(out.1);
    assert!(!out.2);
    assert_eq!(out.3, vec![11, 10]);
    assert_eq!(out.4, vec!["FR".to_string(), "JP".to_string()]);
    assert_eq!(out.5, vec![(1, 2), (2, 1)]);
    assert_eq!(out.6, 3);
}

#[tokio::test]
async fn aggregate_sum_is_per_tenant() {
    let db = db(4).await;
    let (a, _b) = two_tenants(&db).await;
    let total: Option<diesel::data_types::PgNumeric> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(orders::table)
                    .select(sum(orders::total_cents))
                    .get_result(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    // 100 + 250 + 400 for this tenant only.
    let expected = diesel::data_types::PgNumeric::Positive {
        weight: 0,
        scale: 0,
        digits: vec![750],
    };
    assert_eq!(total, Some(expected));
}

#[tokio::test]
async fn joins_filter_each_tenant_table_and_left_join_keeps_outer_rows() {
    let db = db(4).await;
    let (a, _b) = two_tenants(&db).await;
    let (inner, left, with_country) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let inner: Vec<(Key, Key, i64)> = s
                .query(orders::table)
                .inner_join(customers::table.on(customers::id.eq(orders::customer_id)))
                .select((orders::tenant_id, customers::tenant_id, orders::id))
                .order(orders::id)
                .load(&mut tx)
                .await?;
            let left: Vec<(i64, Option<i64>)> = s
                .query(customers::table)
                .left_join(orders::table.on(orders::customer_id.eq(customers::id)))
                .select((customers::id, orders::id.nullable()))
                .order((customers::id, orders::id))
                .load(&mut tx)
                .await?;
            let with_country: Vec<(i64, String)> = s
                .query(orders::table)
                .inner_join(countries::table)
                .select((orders::id, countries::name))
                .order(orders::id)
                .load(&mut tx)
                .await?;
            Ok::<_, Error>((inner, left, with_country))
        })
        .await
        .unwrap();

    assert_eq!(
        inner,
        [10, 11, 12].map(|id| (row_key(&a), row_key(&a), id)).to_vec()
    );
    // Customer 3 has no orders and must still appear, once.
    assert_eq!(
        left,
        vec![(1, Some(10)), (1, Some(11)), (2, Some(12)), (3, None)]
    );
    assert_eq!(
        with_country,
        vec![
            (10, "France".into()),
            (11, "Japan".into()),
            (12, "France".into())
        ]
    );
}

#[tokio::test]
async fn scoped_subqueries_and_boxed_queries() {
    let db = db(4).await;
    let (a, b) = two_tenants(&db).await;
    // In tenant B only, customer 3 gets an order: A's customer 3 must not match through it.
    db.transaction(b, async |mut tx| {
        tx.scope()
            .insert(orders::table)
            .values(NewOrder {
                id: 13,
                customer_id: 3,
                total_cents: 1,
                country_code: "FR".into(),
            })
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let (with_orders, any, boxed) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let with_orders: Vec<i64> = s
                .query(customers::table)
                .filter(
                    customers::id.eq_any(
                        s.query(orders::table)
                            .select(orders::customer_id)
                            .into_subquery(),
                    ),
                )
                .select(customers::id)
                .order(customers::id)
                .load(&mut tx)
                .await?;
            let any: Vec<i64> = s
                .query(customers::table)
                .filter(exists(
                    s.query(orders::table)
                        .filter(orders::customer_id.eq(customers::id))
                        .into_subquery(),
                ))
                .select(customers::id)
                .order(customers::id)
                .load(&mut tx)
                .await?;
            let mut q = s.query(customers::table).select(customers::id).into_boxed();
            q = q.filter(customers::id.ge(2));
            let boxed: Vec<i64> = q.order(customers::id).load(&mut tx).await?;
            Ok::<_, Error>((with_orders, any, boxed))
        })
        .await
        .unwrap();
    assert_eq!(with_orders, vec![1, 2]);
    assert_eq!(any, vec![1, 2]);
    assert_eq!(boxed, vec![2, 3]);
}

#[tokio::test]
async fn inserts_fill_the_tenant_and_updates_and_deletes_stay_in_scope() {
    let db = db(4).await;
    let (a, b) = two_tenants(&db).await;
    let (returned, updated, deleted) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let returned: Customer = s
                .insert(customers::table)
                .values(NewCustomer {
                    id: 50,
                    name: "new".into(),
                    email: None,
                })
                .returning(Customer::as_select())
                .get_result(&mut tx)
                .await?;
            let updated: Vec<(Key, i64)> = s
                .update(customers::table)
                .set(values!(customers::table, customers::email = Some("same@x")))
                .returning((customers::tenant_id, customers::id))
                .get_results(&mut tx)
                .await?;
            let deleted = s
                .delete(customers::table)
                .filter(customers::id.eq(50))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((returned, updated, deleted))
        })
        .await
        .unwrap();
    assert_eq!(returned.tenant_id, row_key(&a));
    assert_eq!(returned.id, 50);
    assert_eq!(updated.len(), 4, "3 seeded + 1 new, all in tenant A");
    assert!(updated.iter().all(|(t, _)| *t == row_key(&a)));
    assert_eq!(deleted, 1);

    // Tenant B's rows were untouched by A's unfiltered update.
    let emails: Vec<Option<String>> = db
        .transaction(b, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .select(customers::email)
                    .order(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(
        emails,
        vec![
            Some("b1@x".into()),
            Some("b2@x".into()),
            Some("b3@x".into())
        ]
    );
}

#[tokio::test]
async fn upserts_meet_only_their_own_tenants_rows() {
    let db = db(4).await;
    let (a, b) = two_tenants(&db).await;
    // A key only tenant B has.
    insert_only_b_row(&db, b).await;

    let (on_b_key, on_own_key, skipped, inserted) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            // B's key: no conflict for A, so a new row of A's is inserted.
            let on_b_key: Customer = s
                .insert(customers::table)
                .values(NewCustomer {
                    id: 99,
                    name: "a-99".into(),
                    email: None,
                })
                .on_conflict(customers::id)
                .do_update()
                .set(values!(customers::table, customers::name = excluded(customers::name)))
                .returning(Customer::as_select())
                .get_result(&mut tx)
                .await?;
            // A key both tenants have: only A's row is updated.
            let on_own_key: Vec<(Key, i64, String)> = s
                .insert(customers::table)
                .values(NewCustomer {
                    id: 1,
                    name: "ignored".into(),
                    email: None,
                })
                .on_conflict((customers::id,))
                .do_update()
                .set(values!(customers::table, customers::name = "a-upserted"))
                .returning((customers::tenant_id, customers::id, customers::name))
                .get_results(&mut tx)
                .await?;
            // DO NOTHING on a batch: 2 exists in A (skipped), 77 is new.
            let skipped = s
                .insert(customers::table)
                .values(vec![
                    NewCustomer {
                        id: 2,
                        name: "dup".into(),
                        email: None,
                    },
                    NewCustomer {
                        id: 77,
                        name: "a-77".into(),
                        email: None,
                    },
                ])
                .on_conflict(customers::id)
                .do_nothing()
                .execute(&mut tx)
                .await?;
            // An empty batch upsert runs and touches nothing.
            let inserted = s
                .insert(customers::table)
                .values(Vec::<NewCustomer>::new())
                .on_conflict(customers::id)
                .do_nothing()
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((on_b_key, on_own_key, skipped, inserted))
        })
        .await
        .unwrap();
    assert_eq!(
        (on_b_key.tenant_id, on_b_key.id, on_b_key.name.as_str()),
        (row_key(&a), 99, "a-99")
    );
    assert_eq!(on_own_key, vec![(row_key(&a), 1, "a-upserted".to_string())]);
    assert_eq!((skipped, inserted), (1, 0));

    let names = |t| {
        let db = &db;
        async move {
            db.transaction(t, async |mut tx| {
                let s = tx.scope();
                Ok::<_, Error>(
                    s.query(customers::table)
                        .select((customers::id, customers::name))
                        .order(customers::id)
                        .load::<(i64, String)>(&mut tx)
                        .await?,
                )
            })
            .await
            .unwrap()
        }
    };
    assert_eq!(
        names(a).await,
        vec![
            (1, "a-upserted".into()),
            (2, "c2".into()),
            (3, "c3".into()),
            (77, "a-77".into()),
            (99, "a-99".into())
        ]
    );
    assert_eq!(
        names(b).await,
        vec![
            (1, "c1".into()),
            (2, "c2".into()),
            (3, "c3".into()),
            (99, "only-b".into())
        ]
    );
}

#[tokio::test]
async fn struct_changeset_update_and_rollback_on_error() {
    let db = db(4).await;
    let (a, _b) = two_tenants(&db).await;
    let r: R<()> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.eq(1))
                .set(NewCustomer {
                    id: 1,
                    name: "renamed".into(),
                    email: None,
                })
                .execute(&mut tx)
                .await?;
            Err(Error::Query(diesel::result::Error::RollbackTransaction))
        })
        .await;
    assert!(r.is_err());
    let name: String = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .filter(customers::id.eq(1))
                    .select(customers::name)
                    .get_result(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(name, "c1", "the update was rolled back");
}

#[tokio::test]
async fn global_tables_are_readable_in_a_tenant_transaction() {
    let db = db(2).await;
    let (a, _b) = two_tenants(&db).await;
    let names: Vec<String> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(countries::table)
                    .select(countries::name)
                    .order(countries::code)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(names, vec!["France".to_string(), "Japan".to_string()]);
}

#[tokio::test]
async fn bad_tenant_ids_are_typed_errors() {
    for bad in [
        "",
        "abc",
        "'; DROP TABLE customers; --",
        "00000000-0000-0000-0000-000000000000",
    ] {
        assert!(bad.parse::<TenantId>().is_err(), "{bad:?}");
    }
}

#[tokio::test]
async fn raw_sql_through_the_escape_hatch_stays_parenthesised() {
    let db = db(2).await;
    let (a, _b) = two_tenants(&db).await;
    let n: i64 = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .filter(tenant_db::unscoped_expr(diesel::dsl::sql::<
                        diesel::sql_types::Bool,
                    >("true OR true")))
                    .count()
                    .get_result(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(n, 3, "`true OR true` stays parenthesised under the tenant filter");
}

#[tokio::test]
async fn lists_and_boxed_scoped_subqueries_stay_in_the_scope() {
    let db = db(2).await;
    let (a, _b) = two_tenants(&db).await;
    let (listed, not_listed, empty, boxed) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let listed: Vec<(Key, i64)> = s
                .query(customers::table)
                .filter(customers::id.eq_any(tenant_db::list(vec![1_i64, 3, 99])))
                .select((customers::tenant_id, customers::id))
                .order(customers::id)
                .load(&mut tx)
                .await?;
            let not_listed: Vec<i64> = s
                .query(customers::table)
                .filter(customers::id.ne_all(tenant_db::list([1_i64, 3])))
                .select(customers::id)
                .load(&mut tx)
                .await?;
            let empty: i64 = s
                .query(customers::table)
                .filter(customers::id.eq_any(tenant_db::list(Vec::<i64>::new())))
                .count()
                .get_result(&mut tx)
                .await?;
            // A subquery boxed after it was built from the scope keeps its tenant filter.
            let mut with_orders = s
                .query(orders::table)
                .select(orders::customer_id)
                .into_boxed();
            with_orders = with_orders.filter(orders::total_cents.gt(0));
            let boxed: Vec<i64> = s
                .query(customers::table)
                .filter(customers::id.eq_any(with_orders.into_subquery()))
                .select(customers::id)
                .order(customers::id)
                .load(&mut tx)
                .await?;
            Ok::<_, Error>((listed, not_listed, empty, boxed))
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![(row_key(&a), 1), (row_key(&a), 3)]);
    assert_eq!(not_listed, vec![2]);
    assert_eq!(empty, 0);
    assert_eq!(boxed, vec![1, 2]);
}

// Custom nodes carry text the compiler cannot see; text that would leave tenant-db's
// parentheses is refused before it is sent.
diesel::infix_operator!(OrAnything, ") OR (");

diesel::define_sql_function! {
    /// A function whose SQL name closes the parentheses it is written in.
    #[sql_name = "lower(name)) OR ((true"]
    fn break_out(x: diesel::sql_types::Text) -> diesel::sql_types::Bool;
}

/// A hand-written node whose SQL ends in a comment.
#[derive(Debug, Clone, Copy, diesel::expression::ValidGrouping, diesel::query_builder::QueryId)]
struct Commented;

impl diesel::expression::Expression for Commented {
    type SqlType = diesel::sql_types::Bool;
}

impl<QS> diesel::expression::AppearsOnTable<QS> for Commented {}
impl<QS> diesel::expression::SelectableExpression<QS> for Commented {}

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for Commented {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("true --");
        Ok(())
    }
}

#[tokio::test]
async fn custom_nodes_that_would_break_out_of_the_tenant_filter_are_refused() {
    use tenant_db::guard::Refusal;
    let db = db(2).await;
    let (a, _b) = two_tenants(&db).await;
    let outcomes = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let op = s
                .query(customers::table)
                .filter(OrAnything::new(customers::name.eq("x"), customers::name.eq("y")))
                .count()
                .get_result::<i64>(&mut tx)
                .await;
            let function = s
                .query(customers::table)
                .filter(break_out(customers::name))
                .count()
                .get_result::<i64>(&mut tx)
                .await;
            let comment = s
                .delete(customers::table)
                .filter(Commented)
                .execute(&mut tx)
                .await;
            Ok::<_, Error>(
                [op.map(|_| ()), function.map(|_| ()), comment.map(|_| ())]
                    .map(|r| r.map_err(Error::from)),
            )
        })
        .await
        .unwrap();
    let reasons: Vec<Option<Refusal>> = outcomes.into_iter().map(refusal).collect();
    assert_eq!(
        reasons,
        vec![
            Some(Refusal::UnbalancedParentheses),
            Some(Refusal::UnbalancedParentheses),
            Some(Refusal::Comment)
        ]
    );
    // Nothing was deleted: the refused statement was never sent.
    let n: i64 = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(s.query(customers::table).count().get_result(&mut tx).await?)
        })
        .await
        .unwrap();
    assert_eq!(n, 3);
}

// Subqueries diesel does not check (an aggregate's FILTER or ORDER BY, a window's PARTITION BY),
// SQL in a custom node's text, functions that run SQL from text or measure whole tables, and text
// that writes a second assignment: refused before they are sent.
diesel::define_sql_function! {
    /// Runs the SQL text it is given.
    fn query_to_xml(q: diesel::sql_types::Text, nulls: diesel::sql_types::Bool, tf: diesel::sql_types::Bool, ns: diesel::sql_types::Text) -> diesel::sql_types::Text;
}
diesel::define_sql_function! {
    /// Every table of the database, as XML.
    fn database_to_xml(nulls: diesel::sql_types::Bool, tf: diesel::sql_types::Bool, ns: diesel::sql_types::Text) -> diesel::sql_types::Text;
}
diesel::define_sql_function! {
    /// Live rows of a table, every tenant's.
    fn pg_stat_get_live_tuples(t: diesel::sql_types::Oid) -> diesel::sql_types::BigInt;
}
diesel::define_sql_function! {
    /// A function whose SQL name reads every tenant's names.
    #[sql_name = "(SELECT string_agg(name, ',') FROM customers) || lower"]
    fn label(x: diesel::sql_types::Text) -> diesel::sql_types::Text;
}
diesel::define_sql_function! {
    /// A function whose SQL name writes a second assignment: the tenant column.
    #[sql_name = "'moved', \"tenant_id\" = '00000000-0000-4000-8000-000000000001', \"email\" = lower"]
    fn moved(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Text;
}
diesel::infix_operator!(WithAllNames, " || (SELECT string_agg(name, ',') FROM customers) || ", diesel::sql_types::Text, backend: diesel::pg::Pg);

#[tokio::test]
async fn hidden_subqueries_text_functions_and_extra_assignments_are_refused() {
    use diesel::QueryDsl;
    use diesel::dsl::{count, exists};
    use diesel::prelude::{AggregateExpressionMethods, WindowExpressionMethods};
    use tenant_db::guard::Refusal;
    let db = db(2).await;
    let (a, b) = two_tenants(&db).await;
    insert_only_b_row(&db, b).await;
    let reasons: Vec<Option<Refusal>> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let only_b = || customers::table.filter(customers::name.eq("only-b"));
            let mut out = Vec::new();
            out.push(refusal(
                s.query(customers::table)
                    .select(count(customers::id).aggregate_filter(exists(only_b())))
                    .get_result::<i64>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(count(customers::id).over().partition_by(exists(only_b())))
                    .load::<i64>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .group_by(customers::name)
                    .having(count(customers::id).aggregate_filter(exists(only_b())).gt(0))
                    .select(customers::name)
                    .load::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            // The same, inside a subquery built from the scope.
            let inner = s
                .query(orders::table)
                .select(diesel::dsl::max(orders::customer_id).aggregate_filter(exists(only_b())))
                .into_subquery();
            out.push(refusal(
                s.delete(customers::table)
                    .filter(customers::id.nullable().eq_any(inner))
                    .execute(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(query_to_xml("SELECT name FROM customers", true, false, ""))
                    .first::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(database_to_xml(false, true, ""))
                    .first::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(pg_stat_get_live_tuples(0))
                    .first::<i64>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(label(customers::name))
                    .first::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(WithAllNames::new(customers::name, customers::name))
                    .first::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.update(customers::table)
                    .filter(customers::id.eq(1))
                    .set(values!(customers::table, customers::name = moved(customers::email)))
                    .execute(&mut tx)
                    .await
                    .map(drop),
            ));
            Ok::<_, Error>(out)
        })
        .await
        .unwrap();
    let subquery = Some(Refusal::Subquery);
    assert_eq!(
        reasons,
        vec![
            subquery,
            subquery,
            subquery,
            subquery,
            Some(Refusal::SessionFunction("query_to_xml*")),
            Some(Refusal::SessionFunction("database_to_xml*")),
            Some(Refusal::SessionFunction("pg_stat_*")),
            subquery,
            subquery,
            Some(Refusal::NotOneExpression),
        ]
    );
}

// Text the check must read as PostgreSQL does: escape strings, a backslash in a string (an
// escape when `standard_conforming_strings` is off), names spelled with Unicode escapes; and
// functions that run SQL from text or read what an earlier transaction left on the connection.
diesel::define_sql_function! {
    /// `set_config`, spelled with a Unicode escape.
    #[sql_name = r#"pg_catalog.U&"set\005fconfig""#]
    fn app_setting(n: diesel::sql_types::Text, v: diesel::sql_types::Text, l: diesel::sql_types::Bool) -> diesel::sql_types::Text;
}
diesel::define_sql_function! {
    /// Two escape strings around `)) OR ((true`: the tenant filter ORed away.
    #[sql_name = r#"E'\'' IS NOT NULL)) OR ((true OR E'\'' IS NOT NULL OR COALESCE"#]
    fn is_active(x: diesel::sql_types::Bool) -> diesel::sql_types::Bool;
}
diesel::define_sql_function! {
    /// The same with plain strings holding a backslash.
    #[sql_name = r#"'\' IS NOT NULL)) OR ((true OR '\' IS NOT NULL OR COALESCE"#]
    fn is_current(x: diesel::sql_types::Bool) -> diesel::sql_types::Bool;
}
diesel::define_sql_function! {
    /// Escape strings hiding a second and third assignment: the tenant column and the key.
    #[sql_name = r#"E'\'' , "tenant_id" = "tenant_id" , "id" = 77 , "email" = E'\'' || COALESCE"#]
    fn normalized(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Text;
}
diesel::define_sql_function! {
    /// Runs the SQL text it is given.
    fn ts_stat(q: diesel::sql_types::Text) -> diesel::sql_types::Text;
}
diesel::define_sql_function! {
    /// The last sequence value this session drew, in whichever transaction.
    fn lastval() -> diesel::sql_types::BigInt;
}

#[tokio::test]
async fn escaped_text_and_functions_that_run_text_are_refused() {
    use tenant_db::guard::Refusal;
    let db = db(2).await;
    let (a, b) = two_tenants(&db).await;
    insert_only_b_row(&db, b).await;
    let reasons: Vec<Option<Refusal>> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let mut out = Vec::new();
            out.push(refusal(
                s.query(customers::table)
                    .select(app_setting("search_path", "pg_catalog", false))
                    .first::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .filter(is_active(true))
                    .select(customers::name)
                    .load::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.update(customers::table)
                    .filter(customers::id.eq(99))
                    .filter(is_current(true))
                    .set(values!(customers::table, customers::name = "set-by-a"))
                    .execute(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.update(customers::table)
                    .filter(customers::id.eq(1))
                    .set(values!(customers::table, customers::name = normalized(customers::email)))
                    .execute(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(ts_stat("SELECT to_tsvector(name) FROM customers"))
                    .first::<String>(&mut tx)
                    .await
                    .map(drop),
            ));
            out.push(refusal(
                s.query(customers::table)
                    .select(lastval())
                    .first::<i64>(&mut tx)
                    .await
                    .map(drop),
            ));
            Ok::<_, Error>(out)
        })
        .await
        .unwrap();
    let escape = Some(Refusal::EscapeSyntax);
    assert_eq!(
        reasons,
        vec![
            escape,
            escape,
            escape,
            escape,
            Some(Refusal::SessionFunction("ts_stat")),
            Some(Refusal::SessionFunction("lastval")),
        ]
    );
    // Nothing of b's was touched.
    let names: Vec<String> = db
        .transaction(b, async |mut tx| {
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
        .unwrap();
    assert_eq!(names, ["c1", "c2", "c3", "only-b"]);
}

/// `"orders"."id" <> $1`, with the `QueryId` of `"orders"."id" = $1`: a node whose SQL its
/// `QueryId` does not describe.
#[derive(Debug, Clone, Copy)]
struct IdOtherThan(i64);

impl diesel::expression::Expression for IdOtherThan {
    type SqlType = diesel::sql_types::Bool;
}
impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for IdOtherThan {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("\"orders\".\"id\" <> ");
        out.push_bind_param::<diesel::sql_types::BigInt, i64>(&self.0)
    }
}
impl diesel::query_builder::QueryId for IdOtherThan {
    type QueryId =
        <diesel::dsl::Eq<orders::id, i64> as diesel::query_builder::QueryId>::QueryId;
    const HAS_STATIC_QUERY_ID: bool = true;
}
impl<QS> diesel::expression::AppearsOnTable<QS> for IdOtherThan {}
impl<GB> diesel::expression::ValidGrouping<GB> for IdOtherThan {
    type IsAggregate = diesel::expression::is_aggregate::Never;
}

#[tokio::test]
async fn a_statement_is_cached_by_its_sql_not_by_a_query_id_that_lies() {
    // One connection: the second transaction runs on the first one's statement cache.
    let db = db(1).await;
    let (a, b) = two_tenants(&db).await;
    let not_10: Vec<i64> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(orders::table)
                    .filter(IdOtherThan(10))
                    .select(orders::id)
                    .order(orders::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(not_10, [11, 12]);
    let (only_10, deleted) = db
        .transaction(b, async |mut tx| {
            let s = tx.scope();
            let only_10: Vec<i64> = s
                .query(orders::table)
                .filter(orders::id.eq(10))
                .select(orders::id)
                .order(orders::id)
                .load(&mut tx)
                .await?;
            let deleted = s
                .delete(orders::table)
                .filter(orders::id.eq(99))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((only_10, deleted))
        })
        .await
        .unwrap();
    assert_eq!((only_10, deleted), (vec![10], 0));
}

// A table declared by hand over `customers`, whose tenant-key column renders SQL that would
// widen any filter it appears in. tenant-db writes the tenant predicate itself, from the table
// and the column's name, so the column's own SQL never reaches it.
diesel::table! {
    #[sql_name = "customers"]
    people (id) {
        id -> BigInt,
        name -> Text,
    }
}

/// The tenant key of `people`, declared by hand, rendering `… IS NOT NULL OR …`.
#[derive(Debug, Clone, Copy, Default, diesel::query_builder::QueryId)]
pub struct PeopleTenant;

impl diesel::expression::Expression for PeopleTenant {
    type SqlType = KeySql;
}
impl diesel::Column for PeopleTenant {
    type Table = people::table;
    const NAME: &'static str = "tenant_id";
}
impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for PeopleTenant {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> diesel::QueryResult<()> {
        out.push_sql("\"customers\".\"tenant_id\" IS NOT NULL OR \"customers\".\"tenant_id\"");
        Ok(())
    }
}
impl<QS> diesel::expression::AppearsOnTable<QS> for PeopleTenant {}
impl<QS> diesel::expression::SelectableExpression<QS> for PeopleTenant {}
impl<GB> diesel::expression::ValidGrouping<GB> for PeopleTenant {
    type IsAggregate = diesel::expression::is_aggregate::No;
}
impl tenant_db::ColumnRole for PeopleTenant {
    type Role = tenant_db::role::TenantKey;
}
impl tenant_db::ColumnRole for people::name {
    type Role = tenant_db::role::Data;
}
impl tenant_db::Classified for people::table {
    type Kind = tenant_db::kind::Tenant<PeopleTenant>;
}

#[tokio::test]
async fn a_hand_written_tenant_column_cannot_widen_the_tenant_predicate() {
    let db = db(2).await;
    let (a, b) = two_tenants(&db).await;
    insert_only_b_row(&db, b).await;
    let (rows, updated) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let rows: Vec<(i64, String)> = s.query(people::table).load(&mut tx).await?;
            let updated = s
                .update(people::table)
                .filter(people::id.eq(99))
                .set(values!(people::table, people::name = "overwritten-by-a"))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((rows.len(), updated))
        })
        .await
        .unwrap();
    assert_eq!((rows, updated), (3, 0));
}

#[tokio::test]
async fn the_escape_hatchs_text_is_still_read() {
    // Text the escape hatch carries may read anything (RLS guards that), but it may not undo
    // the tenant filter around it, end the statement, or call a session function.
    use tenant_db::guard::Refusal;
    let db = db(2).await;
    let (a, b) = two_tenants(&db).await;
    insert_only_b_row(&db, b).await;
    let mut reasons = Vec::new();
    for text in [
        "true) OR (true",
        "true --",
        "true /* */",
        "true; SELECT true",
        "set_config('app.user', 'x', true) <> ''",
    ] {
        let outcome = db
            .transaction(a, async |mut tx| {
                let s = tx.scope();
                let ids = s
                    .query(customers::table)
                    .filter(tenant_db::unscoped_expr(diesel::dsl::sql::<
                        diesel::sql_types::Bool,
                    >(text)))
                    .select(customers::id)
                    .load::<i64>(&mut tx)
                    .await;
                Ok::<_, Error>(ids)
            })
            .await
            .unwrap();
        reasons.push(refusal(outcome));
    }
    assert_eq!(
        reasons,
        vec![
            Some(Refusal::UnbalancedParentheses),
            Some(Refusal::Comment),
            Some(Refusal::Comment),
            Some(Refusal::Semicolon),
            Some(Refusal::SessionFunction("set_config")),
        ]
    );
}

#[tokio::test]
async fn the_escape_hatch_is_read_in_the_select_list_and_order_by_too() {
    // The same check holds wherever the escape hatch stands: in the select list a `--` would
    // cut off the tenant filter after `FROM`, in `ORDER BY` a `;` would start a statement of
    // its own. Harmless text in either place still runs under the tenant filter.
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    use tenant_db::guard::Refusal;
    use tenant_db::unscoped_expr;
    let db = db(2).await;
    let (a, b) = two_tenants(&db).await;
    insert_only_b_row(&db, b).await;
    let (cut_off, ended, unbalanced, harmless) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let cut_off = s
                .query(customers::table)
                .select(unscoped_expr(sql::<BigInt>(
                    "customers.id FROM customers --",
                )))
                .load::<i64>(&mut tx)
                .await;
            let ended = s
                .query(customers::table)
                .select(customers::id)
                .order(unscoped_expr(sql::<BigInt>(
                    "customers.id; DELETE FROM customers",
                )))
                .load::<i64>(&mut tx)
                .await;
            let unbalanced = s
                .query(customers::table)
                .select(customers::id)
                .order(customers::id)
                .then_order_by(unscoped_expr(sql::<BigInt>("customers.id)")))
                .load::<i64>(&mut tx)
                .await;
            let harmless = s
                .query(customers::table)
                .select(unscoped_expr(sql::<BigInt>("customers.id")))
                .order(unscoped_expr(sql::<BigInt>("customers.id DESC")))
                .load::<i64>(&mut tx)
                .await;
            Ok::<_, Error>((cut_off, ended, unbalanced, harmless))
        })
        .await
        .unwrap();
    assert_eq!(
        [refusal(cut_off), refusal(ended), refusal(unbalanced)],
        [
            Some(Refusal::Comment),
            Some(Refusal::Semicolon),
            Some(Refusal::UnbalancedParentheses),
        ]
    );
    let harmless = harmless.unwrap();
    assert!(!harmless.contains(&99), "tenant b's row leaked: {harmless:?}");
    assert!(!harmless.is_empty());
    assert!(
        harmless.windows(2).all(|w| w[0] > w[1]),
        "not in the order asked for: {harmless:?}"
    );
}
