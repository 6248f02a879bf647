//! Self-joins through `diesel::alias!` (an employee and their manager, the manager's manager):
//! each alias gets its own tenant condition in its `ON` clause. Run as the `BYPASSRLS` role, so
//! that only tenant-db's own conditions stand between the tenants, and as the application role.
//!
//! The two tenants have the same ids and the manager column is not part of a composite foreign
//! key, so a join on ids alone would pair an employee with the other tenant's manager.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs
)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel_async::SimpleAsyncConnection;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use uuid::Uuid;

diesel::table! {
    staff (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        manager_id -> Nullable<BigInt>,
        name -> Text,
    }
}

diesel::alias!(staff as managers: Managers, staff as grand_managers: GrandManagers);

#[derive(
    Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable,
)]
#[diesel(table_name = staff)]
pub struct Staff {
    pub tenant_id: Uuid,
    pub id: i64,
    pub manager_id: Option<i64>,
    pub name: String,
}

#[derive(Debug, Clone, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = staff)]
pub struct NewStaff {
    pub id: i64,
    pub manager_id: Option<i64>,
    pub name: String,
}

async fn prepare() {
    static PREPARED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    PREPARED.get_or_init(create_staff).await;
}

/// Creates the table (once per test binary: one `batch_execute` is one transaction, so the
/// advisory lock only serialises it with other binaries).
async fn create_staff() {
    let mut owner = owner().await;
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242005);
             CREATE TABLE IF NOT EXISTS staff (tenant_id uuid NOT NULL, id bigint NOT NULL,
                 manager_id bigint, name text NOT NULL, PRIMARY KEY (tenant_id, id));
             {}
             {}{}
             SELECT pg_advisory_unlock(4242005);",
            tenant_db::rls::migration_sql::<staff::table>().unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(tenant_db_tests::APP_ROLE, "\"staff\"")
                .unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(tenant_db_tests::NO_RLS_ROLE, "\"staff\"")
                .unwrap(),
        ))
        .await
        .unwrap();
}

/// 1 (no manager) ← 2 ← 3, and 1 ← 4; names carry the tenant's tag.
async fn seed(db: &TenantDb, tenant: Tenant, tag: &str) {
    db.transaction(tenant, async |mut tx| {
        let rows = [(1, None), (2, Some(1)), (3, Some(2)), (4, Some(1))].map(|(id, manager_id)| {
            NewStaff {
                id,
                manager_id,
                name: format!("{tag}{id}"),
            }
        });
        tx.scope()
            .insert(staff::table)
            .values(rows.to_vec())
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

async fn pools() -> [TenantDb; 2] {
    prepare().await;
    [db_without_rls(2).await, db_with_rls(2).await]
}

#[tokio::test]
async fn each_alias_of_a_self_join_gets_its_own_tenant_condition() {
    for db in pools().await {
        let (a, b) = (keyed::new_tenant(), keyed::new_tenant());
        seed(&db, a, "a").await;
        seed(&db, b, "b").await;
        for (tenant, tag) in [(a, "a"), (b, "b")] {
            let joined: Vec<(String, String)> = db
                .transaction(tenant, async |mut tx| {
                    let s = tx.scope();
                    let q = s
                        .query(staff::table)
                        .inner_join(
                            managers.on(managers.field(staff::id).nullable().eq(staff::manager_id)),
                        )
                        .select((staff::name, managers.field(staff::name)))
                        .order(staff::id);
                    Ok::<_, Error>(q.load(&mut tx).await?)
                })
                .await
                .unwrap();
            let t = |n: u8| format!("{tag}{n}");
            assert_eq!(
                joined,
                vec![(t(2), t(1)), (t(3), t(2)), (t(4), t(1))],
                "tenant {tag}"
            );
        }
    }
}

#[tokio::test]
async fn two_aliases_and_a_left_join_keep_their_tenant_conditions() {
    for db in pools().await {
        let (a, b) = (keyed::new_tenant(), keyed::new_tenant());
        seed(&db, a, "a").await;
        seed(&db, b, "b").await;
        let joined: Vec<(String, Option<String>, Option<String>)> = db
            .transaction(a, async |mut tx| {
                let s = tx.scope();
                let q = s
                    .query(staff::table)
                    .left_join(
                        managers.on(managers.field(staff::id).nullable().eq(staff::manager_id)),
                    )
                    .left_join(
                        grand_managers.on(grand_managers
                            .field(staff::id)
                            .nullable()
                            .eq(managers.field(staff::manager_id))),
                    )
                    .select((
                        staff::name,
                        managers.field(staff::name).nullable(),
                        grand_managers.field(staff::name).nullable(),
                    ))
                    .order(staff::id);
                Ok::<_, Error>(q.load(&mut tx).await?)
            })
            .await
            .unwrap();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            joined,
            vec![
                ("a1".to_string(), None, None),
                ("a2".to_string(), some("a1"), None),
                ("a3".to_string(), some("a2"), some("a1")),
                ("a4".to_string(), some("a1"), None),
            ]
        );

        // In a filter, a count and an `exists` built from the scope.
        let (count, managed_by_a2) = db
            .transaction(a, async |mut tx| {
                let s = tx.scope();
                let count: i64 = s
                    .query(staff::table)
                    .inner_join(
                        managers.on(managers.field(staff::id).nullable().eq(staff::manager_id)),
                    )
                    .filter(managers.field(staff::name).like("a%"))
                    .count()
                    .get_result(&mut tx)
                    .await?;
                let managed_by_a2 = s
                    .query(staff::table)
                    .filter(tenant_db::exists(
                        s.query(staff::table)
                            .inner_join(
                                managers
                                    .on(managers.field(staff::id).nullable().eq(staff::manager_id)),
                            )
                            .filter(managers.field(staff::name).eq("a2"))
                            .into_subquery(),
                    ))
                    .exists(&mut tx)
                    .await?;
                Ok::<_, Error>((count, managed_by_a2))
            })
            .await
            .unwrap();
        assert_eq!(count, 3);
        assert!(managed_by_a2);
    }
}

#[tokio::test]
async fn a_manager_of_another_tenant_with_a_guessed_id_is_not_joined() {
    // B's employee 5 names manager 7, which only A has; B's join finds no manager.
    for db in pools().await {
        let (a, b) = (keyed::new_tenant(), keyed::new_tenant());
        for (tenant, tag, id, manager_id) in [(a, "a", 7, None), (b, "b", 5, Some(7))] {
            db.transaction(tenant, async |mut tx| {
                tx.scope()
                    .insert(staff::table)
                    .values(NewStaff {
                        id,
                        manager_id,
                        name: format!("{tag}{id}"),
                    })
                    .execute(&mut tx)
                    .await?;
                Ok::<_, Error>(())
            })
            .await
            .unwrap();
        }
        let joined: Vec<(String, Option<String>)> = db
            .transaction(b, async |mut tx| {
                let s = tx.scope();
                let q = s
                    .query(staff::table)
                    .left_join(
                        managers.on(managers.field(staff::id).nullable().eq(staff::manager_id)),
                    )
                    .select((staff::name, managers.field(staff::name).nullable()));
                Ok::<_, Error>(q.load(&mut tx).await?)
            })
            .await
            .unwrap();
        assert_eq!(joined, vec![("b5".to_string(), None)]);
        // And the rows are really there: A reads its manager.
        let names: Vec<String> = db
            .transaction(a, async |mut tx| {
                let s = tx.scope();
                Ok::<_, Error>(
                    s.query(staff::table)
                        .select(staff::name)
                        .load(&mut tx)
                        .await?,
                )
            })
            .await
            .unwrap();
        assert_eq!(names, ["a7"]);
    }
}
