//! `rls::policy_sql` and `rls::migration_sql` applied to a table whose key does not start with
//! the tenant column: the policies alone isolate tenants (RLS forced, as the application
//! role), and the migration adds the index that leads with the tenant column, once.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel::sql_types::{BigInt, Bool, Text};
use diesel_async::{RunQueryDsl as _, SimpleAsyncConnection};
use tenant_db::Error;
use tenant_db_tests::schema::new_tenant;
use uuid::Uuid;

diesel::table! {
    events (id) {
        id -> BigInt,
        tenant_id -> Uuid,
        body -> Text,
    }
}

#[derive(Debug, Clone, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
#[diesel(table_name = events)]
pub struct Event {
    pub id: i64,
    pub tenant_id: Uuid,
    pub body: String,
}

#[derive(Debug, Clone, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = events)]
pub struct NewEvent {
    pub id: i64,
    pub body: String,
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Rls {
    #[diesel(sql_type = Bool)]
    enabled: bool,
    #[diesel(sql_type = Bool)]
    forced: bool,
    #[diesel(sql_type = BigInt)]
    tenant_indexes: i64,
    #[diesel(sql_type = Text)]
    policies: String,
}

async fn rls_state(owner: &mut diesel_async::AsyncPgConnection) -> Rls {
    diesel::sql_query(
        "SELECT c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced,
                (SELECT count(*) FROM pg_index i JOIN pg_attribute a
                   ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                 WHERE i.indrelid = c.oid AND a.attname = 'tenant_id') AS tenant_indexes,
                coalesce((SELECT string_agg(p.polname || ':' || p.polpermissive::text, ',' ORDER BY 1)
                          FROM pg_policy p WHERE p.polrelid = c.oid), '') AS policies
         FROM pg_class c WHERE c.oid = 'events'::regclass",
    )
    .get_result(owner)
    .await
    .unwrap()
}

#[tokio::test]
async fn policy_sql_isolates_and_migration_sql_adds_the_tenant_index_once() {
    let mut owner = owner().await;
    owner
        .batch_execute(&format!(
            "CREATE TABLE events (id bigint PRIMARY KEY, tenant_id uuid NOT NULL, body text NOT NULL);
             {}{}",
            tenant_db::roles::tenant_table_write_sql::<events::table>(tenant_db_tests::APP_ROLE)
                .unwrap(),
            tenant_db::seal::setup_sql(),
        ))
        .await
        .unwrap();
    let before = rls_state(&mut owner).await;
    assert!(!before.enabled && before.tenant_indexes == 0, "{before:?}");

    owner
        .batch_execute(&tenant_db::rls::policy_sql::<events::table>().unwrap())
        .await
        .unwrap();
    let policies = rls_state(&mut owner).await;
    assert!(policies.enabled && policies.forced, "{policies:?}");
    assert_eq!(policies.tenant_indexes, 0, "policy_sql adds no index");
    assert!(
        policies.policies.contains(":false"),
        "a restrictive policy: {policies:?}"
    );

    // The policies alone keep each tenant to its rows, for the application role.
    let db = db_with_rls(2).await;
    let (a, b) = (new_tenant(), new_tenant());
    for (tenant, id) in [(a, 1), (b, 2)] {
        db.transaction(tenant, async move |mut tx| {
            tx.scope()
                .insert(events::table)
                .values(NewEvent {
                    id,
                    body: format!("e{id}"),
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    }
    let seen = load_raw::<Id>(&db, a, "SELECT id FROM events ORDER BY id").await;
    assert_eq!(seen, [Id { id: 1 }]);

    for _ in 0..2 {
        owner
            .batch_execute(&tenant_db::rls::migration_sql::<events::table>().unwrap())
            .await
            .unwrap();
    }
    let migrated = rls_state(&mut owner).await;
    assert_eq!(migrated.tenant_indexes, 1, "{migrated:?}");
    assert_eq!(migrated.policies, policies.policies);
}

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}
