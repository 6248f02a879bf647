//! A tenant column that is not called `tenant_id` (`#[tenant(column = org_id)]`), at run time:
//! scoped select, insert, update, delete, upsert and join on such tables, for two tenants with
//! the same ids; RLS (written for `org_id` by `rls::migration_sql`) holds behind them.

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
    org_accounts (org_id, id) {
        org_id -> Uuid,
        id -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    org_invoices (org_id, id) {
        org_id -> Uuid,
        id -> BigInt,
        account_id -> BigInt,
        cents -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(org_accounts, org_invoices);

#[derive(
    Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable,
)]
#[diesel(table_name = org_accounts)]
#[tenant(column = org_id)]
pub struct Account {
    pub org_id: Uuid,
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = org_accounts)]
pub struct NewAccount {
    pub id: i64,
    pub name: String,
}

#[derive(
    Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable,
)]
#[diesel(table_name = org_invoices)]
#[tenant(column = org_id)]
pub struct Invoice {
    pub org_id: Uuid,
    pub id: i64,
    pub account_id: i64,
    pub cents: i64,
}

#[derive(Debug, Clone, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = org_invoices)]
pub struct NewInvoice {
    pub id: i64,
    pub account_id: i64,
    pub cents: i64,
}

async fn db() -> TenantDb {
    let url = app_url().await;
    let mut owner = owner().await;
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242004);
             CREATE TABLE IF NOT EXISTS org_accounts (org_id uuid NOT NULL, id bigint NOT NULL,
                 name text NOT NULL, PRIMARY KEY (org_id, id));
             CREATE TABLE IF NOT EXISTS org_invoices (org_id uuid NOT NULL, id bigint NOT NULL,
                 account_id bigint NOT NULL, cents bigint NOT NULL, PRIMARY KEY (org_id, id),
                 FOREIGN KEY (org_id, account_id) REFERENCES org_accounts (org_id, id)
                     ON DELETE CASCADE);
             {}{}
             GRANT SELECT ON org_accounts, org_invoices TO {app};
             {}{}
             SELECT pg_advisory_unlock(4242004);",
            tenant_db::rls::migration_sql::<org_accounts::table>().unwrap(),
            tenant_db::rls::migration_sql::<org_invoices::table>().unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(
                tenant_db_tests::APP_ROLE,
                "\"org_accounts\""
            )
            .unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(
                tenant_db_tests::APP_ROLE,
                "\"org_invoices\""
            )
            .unwrap(),
            app = tenant_db_tests::APP_ROLE,
        ))
        .await
        .unwrap();
    TenantDb::connect(&url, 4).unwrap()
}

fn uuid_of(tenant: Tenant) -> Uuid {
    tenant.id().as_uuid().unwrap()
}

async fn seed(db: &TenantDb, tenant: Tenant, tag: &str) {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        s.insert(org_accounts::table)
            .values(
                (1..=3)
                    .map(|id| NewAccount {
                        id,
                        name: format!("{tag}{id}"),
                    })
                    .collect::<Vec<_>>(),
            )
            .execute(&mut tx)
            .await?;
        s.insert(org_invoices::table)
            .values(vec![
                NewInvoice {
                    id: 10,
                    account_id: 1,
                    cents: 100,
                },
                NewInvoice {
                    id: 11,
                    account_id: 2,
                    cents: 200,
                },
            ])
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
}

async fn accounts(db: &TenantDb, tenant: Tenant) -> Vec<Account> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(
            s.query(org_accounts::table)
                .select(Account::as_select())
                .order(org_accounts::id)
                .load(&mut tx)
                .await?,
        )
    })
    .await
    .unwrap()
}

#[test]
fn composite_keys_use_each_tables_own_tenant_column() {
    let sql = tenant_db::rls::composite_keys::<org_invoices::table>()
        .primary_key(org_invoices::id)
        .foreign_key(
            org_invoices::account_id,
            org_accounts::table,
            org_accounts::id,
        )
        .sql()
        .unwrap();
    assert_eq!(
        sql,
        "ALTER TABLE \"org_invoices\" ADD PRIMARY KEY (\"org_id\", \"id\");\n\
         ALTER TABLE \"org_invoices\" ADD FOREIGN KEY (\"org_id\", \"account_id\") \
         REFERENCES \"org_accounts\" (\"org_id\", \"id\");\n"
    );
    // A parent whose tenant column has another name: each side names its own.
    let sql = tenant_db::rls::composite_keys::<org_invoices::table>()
        .foreign_key(
            org_invoices::account_id,
            keyed::customers::table,
            keyed::customers::id,
        )
        .sql()
        .unwrap();
    assert!(
        sql.contains(
            "FOREIGN KEY (\"org_id\", \"account_id\") REFERENCES \"customers\" (\"tenant_id\", \"id\")"
        ),
        "{sql}"
    );
}

#[tokio::test]
async fn every_scoped_form_stays_in_the_tenant_on_a_renamed_column() {
    let db = db().await;
    let (a, b) = (keyed::new_tenant(), keyed::new_tenant());
    seed(&db, a, "a").await;
    seed(&db, b, "b").await;

    // Select.
    let rows = accounts(&db, a).await;
    assert_eq!(rows.len(), 3);
    assert!(
        rows.iter()
            .all(|r| r.org_id == uuid_of(a) && r.name.starts_with('a')),
        "{rows:?}"
    );

    // Update and delete touch only A's rows with the same ids.
    let (updated, deleted) = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            let updated = s
                .update(org_accounts::table)
                .filter(org_accounts::id.eq(1))
                .set(tenant_db::values!(
                    org_accounts::table,
                    org_accounts::name = "a1 renamed"
                ))
                .execute(&mut tx)
                .await?;
            let deleted = s
                .delete(org_accounts::table)
                .filter(org_accounts::id.eq(3))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((updated, deleted))
        })
        .await
        .unwrap();
    assert_eq!((updated, deleted), (1, 1));

    // Upsert: DO UPDATE on A's key, DO NOTHING on an existing one, an insert of a new one.
    db.transaction(a, async |mut tx| {
        let s = tx.scope();
        s.insert(org_accounts::table)
            .values(NewAccount {
                id: 2,
                name: "a2 upserted".into(),
            })
            .on_conflict(org_accounts::id)
            .do_update()
            .set(tenant_db::values!(
                org_accounts::table,
                org_accounts::name = "a2 upserted"
            ))
            .execute(&mut tx)
            .await?;
        s.insert(org_accounts::table)
            .values(NewAccount {
                id: 1,
                name: "ignored".into(),
            })
            .on_conflict(org_accounts::id)
            .do_nothing()
            .execute(&mut tx)
            .await?;
        s.insert(org_accounts::table)
            .values(NewAccount {
                id: 4,
                name: "a4".into(),
            })
            .on_conflict(org_accounts::id)
            .do_nothing()
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    let names: Vec<String> = accounts(&db, a).await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["a1 renamed", "a2 upserted", "a4"]);
    // B's rows with the same ids are as they were.
    let names: Vec<String> = accounts(&db, b).await.into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["b1", "b2", "b3"]);

    // Join: each side's tenant condition on `org_id`.
    let joined: Vec<(Uuid, Uuid, i64, String)> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(org_invoices::table)
                    .inner_join(
                        org_accounts::table.on(org_accounts::id.eq(org_invoices::account_id)),
                    )
                    .select((
                        org_invoices::org_id,
                        org_accounts::org_id,
                        org_invoices::id,
                        org_accounts::name,
                    ))
                    .order(org_invoices::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(
        joined,
        vec![
            (uuid_of(a), uuid_of(a), 10, "a1 renamed".to_string()),
            (uuid_of(a), uuid_of(a), 11, "a2 upserted".to_string()),
        ]
    );

    // RLS on the renamed column: raw SQL in A's transaction sees A's rows only, and cannot
    // write a row for B.
    #[derive(diesel::QueryableByName)]
    struct Org {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        org_id: Uuid,
    }
    let b_uuid = uuid_of(b);
    let seen = db
        .transaction(a, async |mut tx| {
            let seen: Vec<Org> = tx
                .unscoped_load(diesel::sql_query("SELECT org_id FROM org_accounts"))
                .await?;
            Ok::<_, Error>(seen)
        })
        .await
        .unwrap();
    assert!(!seen.is_empty() && seen.iter().all(|o| o.org_id == uuid_of(a)));
    let forged = db
        .transaction(a, async |mut tx| {
            tx.unscoped_execute(diesel::sql_query(format!(
                "INSERT INTO org_accounts (org_id, id, name) VALUES ('{b_uuid}', 99, 'forged')"
            )))
            .await?;
            Ok::<_, Error>(())
        })
        .await
        .expect_err("RLS let A write a row of B's");
    assert!(
        forged.to_string().contains("row-level security"),
        "{forged}"
    );
    assert_eq!(accounts(&db, b).await.len(), 3);
}
