//! Attacks on aliases under the BYPASSRLS role, where only tenant-db's query-level conditions
//! hold: `or_filter` on a left-joined alias, aliases in `exists`, boxed queries, scalar
//! subqueries, and `UPDATE`/`DELETE` filters. B's manager 1 is named "b1"; A's staff point at
//! manager id 1 too, so a query of A that finds "b1" has reached B's row through an alias.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs
)]

use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use tenant_db_tests::schema as keyed;
use uuid::Uuid;

const DB: &str = "tenant_db_alias_attacks";

diesel::table! {
    rt_staff (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        manager_id -> Nullable<BigInt>,
        name -> Text,
    }
}
diesel::alias!(rt_staff as managers: Managers, rt_staff as grands: Grands);

/// `managers.id = rt_staff.manager_id`: each staff row's manager, through the alias.
fn manager_of_staff() -> diesel::dsl::Eq<
    diesel::dsl::Nullable<diesel::query_source::AliasedField<Managers, rt_staff::id>>,
    rt_staff::manager_id,
> {
    managers
        .field(rt_staff::id)
        .nullable()
        .eq(rt_staff::manager_id)
}

#[derive(
    Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable,
)]
#[diesel(table_name = rt_staff)]
pub struct Staff {
    pub tenant_id: Uuid,
    pub id: i64,
    pub manager_id: Option<i64>,
    pub name: String,
}
#[derive(Debug, Clone, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = rt_staff)]
pub struct NewStaff {
    pub id: i64,
    pub manager_id: Option<i64>,
    pub name: String,
}

async fn urls() -> (String, String) {
    let app = tenant_db_tests::provision(DB, &keyed::schema_sql(), keyed::TENANT_TABLES)
        .await
        .unwrap();
    let mut owner = diesel_async::AsyncPgConnection::establish(&tenant_db_tests::url_for(
        tenant_db_tests::OWNER_ROLE,
        DB,
    ))
    .await
    .unwrap();
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242007);
             CREATE TABLE IF NOT EXISTS rt_staff (tenant_id uuid NOT NULL, id bigint NOT NULL,
                 manager_id bigint, name text NOT NULL, PRIMARY KEY (tenant_id, id));
             {}{}{}
             SELECT pg_advisory_unlock(4242007);",
            tenant_db::rls::migration_sql::<rt_staff::table>().unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(tenant_db_tests::APP_ROLE, "\"rt_staff\"")
                .unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(
                tenant_db_tests::NO_RLS_ROLE,
                "\"rt_staff\""
            )
            .unwrap(),
        ))
        .await
        .unwrap();
    (
        app,
        tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DB),
    )
}

async fn seed(db: &TenantDb, t: Tenant, tag: &str) {
    db.transaction(t, async |mut tx| {
        let rows = [(1, None), (2, Some(1)), (3, Some(2)), (4, Some(1))].map(|(id, manager_id)| {
            NewStaff {
                id,
                manager_id,
                name: format!("{tag}{id}"),
            }
        });
        tx.scope()
            .insert(rt_staff::table)
            .values(rows.to_vec())
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

async fn bypass_db() -> (TenantDb, Tenant, Tenant) {
    let (_, no_rls) = urls().await;
    let db = TenantDb::connect(&no_rls, 2).unwrap();
    let (a, b) = (keyed::new_tenant(), keyed::new_tenant());
    seed(&db, a, "a").await;
    seed(&db, b, "b").await;
    (db, a, b)
}

#[tokio::test]
async fn or_filter_on_left_joined_alias() {
    let (db, a, _) = bypass_db().await;
    let rows: Vec<(String, Option<String>)> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(rt_staff::table)
                    .left_join(managers.on(manager_of_staff()))
                    .filter(rt_staff::name.eq("zzz"))
                    .or_filter(managers.field(rt_staff::name).eq("b1"))
                    .or_filter(managers.field(rt_staff::tenant_id).is_not_null())
                    .select((rt_staff::name, managers.field(rt_staff::name).nullable()))
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert!(
        rows.iter()
            .all(|(n, m)| n.starts_with('a') && m.as_deref().is_none_or(|m| m.starts_with('a'))),
        "{rows:?}"
    );
    // Not vacuous: A's three managed staff, each with A's manager.
    let mut rows = rows;
    rows.sort();
    let expected = [("a2", "a1"), ("a3", "a2"), ("a4", "a1")]
        .map(|(n, m)| (n.to_string(), Some(m.to_string())));
    assert_eq!(rows, expected);
}

#[tokio::test]
async fn alias_in_scalar_exists_and_boxed() {
    let (db, a, _) = bypass_db().await;
    let (n, exists_b1, boxed): (i64, bool, i64) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let n: i64 = s
                .query(rt_staff::table)
                .inner_join(managers.on(manager_of_staff()))
                .filter(managers.field(rt_staff::name).eq("b1"))
                .count()
                .get_result(&mut tx)
                .await?;
            let exists_b1 = s
                .query(rt_staff::table)
                .filter(tenant_db::exists(
                    s.query(rt_staff::table)
                        .left_join(managers.on(manager_of_staff()))
                        .left_join(
                            grands.on(grands
                                .field(rt_staff::id)
                                .nullable()
                                .eq(managers.field(rt_staff::manager_id))),
                        )
                        .filter(
                            grands
                                .field(rt_staff::name)
                                .eq("b1")
                                .or(managers.field(rt_staff::name).eq("b1")),
                        )
                        .into_subquery(),
                ))
                .exists(&mut tx)
                .await?;
            let boxed: i64 = s
                .query(rt_staff::table)
                .inner_join(managers.on(manager_of_staff()))
                .into_boxed()
                .filter(managers.field(rt_staff::name).like("b%"))
                .count()
                .get_result(&mut tx)
                .await?;
            Ok::<_, Error>((n, exists_b1, boxed))
        })
        .await
        .unwrap();
    assert_eq!((n, exists_b1, boxed), (0, false, 0));
}

#[tokio::test]
async fn alias_scalar_in_selection() {
    let (db, a, _) = bypass_db().await;
    let rows: Vec<(String, Option<i64>)> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(rt_staff::table)
                    .select((
                        rt_staff::name,
                        tenant_db::scalar(
                            s.query(rt_staff::table)
                                .inner_join(managers.on(manager_of_staff()))
                                .filter(managers.field(rt_staff::name).like("b%"))
                                .count()
                                .into_subquery(),
                        ),
                    ))
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert!(rows.iter().all(|(_, c)| *c == Some(0)), "{rows:?}");
    assert_eq!(rows.len(), 4, "A's four staff, each with its count");
}

#[tokio::test]
async fn alias_in_update_and_delete_filters() {
    let (db, a, _) = bypass_db().await;
    let (updated, deleted) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let managed_by_b1 = || {
                s.query(rt_staff::table)
                    .inner_join(managers.on(manager_of_staff()))
                    .filter(managers.field(rt_staff::name).eq("b1"))
                    .select(rt_staff::id)
                    .into_subquery()
            };
            let updated = s
                .update(rt_staff::table)
                .filter(rt_staff::id.eq_any(managed_by_b1()))
                .set(tenant_db::values!(
                    rt_staff::table,
                    rt_staff::name = "PWNED"
                ))
                .execute(&mut tx)
                .await?;
            let deleted = s
                .delete(rt_staff::table)
                .filter(tenant_db::exists(
                    s.query(rt_staff::table)
                        .inner_join(managers.on(manager_of_staff()))
                        .filter(managers.field(rt_staff::name).eq("b1"))
                        .into_subquery(),
                ))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((updated, deleted))
        })
        .await
        .unwrap();
    assert_eq!((updated, deleted), (0, 0));
}
