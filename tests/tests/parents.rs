//! Parents of another tenant: with keys from `rls::composite_keys` (tenant column first), a
//! child that names another tenant's parent cannot be inserted, as the application role or as
//! a role that bypasses RLS, and the error is the one a missing parent gets: it does not tell
//! whether the other tenant's parent exists. Unique keys are per tenant.

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
    gen_parents (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        name -> Text,
    }
}

diesel::table! {
    gen_children (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        parent_id -> BigInt,
    }
}

#[derive(Debug, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
#[diesel(table_name = gen_parents)]
pub struct Parent {
    pub tenant_id: Uuid,
    pub id: i64,
    pub name: String,
}

#[derive(Debug, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = gen_parents)]
pub struct NewParent {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
#[diesel(table_name = gen_children)]
pub struct Child {
    pub tenant_id: Uuid,
    pub id: i64,
    pub parent_id: i64,
}

#[derive(Debug, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = gen_children)]
pub struct NewChild {
    pub id: i64,
    pub parent_id: i64,
}

/// The tables, created without keys, then given the generated ones.
async fn set_up() -> String {
    app_url().await;
    let keys = tenant_db::rls::composite_keys::<gen_parents::table>()
        .primary_key(gen_parents::id)
        .unique((gen_parents::name,))
        .sql()
        .unwrap()
        + &tenant_db::rls::composite_keys::<gen_children::table>()
            .primary_key(gen_children::id)
            .foreign_key(gen_children::parent_id, gen_parents::table, gen_parents::id)
            .sql()
            .unwrap();
    let mut owner = owner().await;
    let app = tenant_db_tests::APP_ROLE;
    let no_rls = tenant_db_tests::NO_RLS_ROLE;
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242005);
             DROP TABLE IF EXISTS gen_children, gen_parents;
             CREATE TABLE gen_parents (tenant_id uuid NOT NULL, id bigint NOT NULL, name text NOT NULL);
             CREATE TABLE gen_children (tenant_id uuid NOT NULL, id bigint NOT NULL, parent_id bigint NOT NULL);
             {keys}{}{}
             GRANT SELECT ON gen_parents, gen_children TO {app}, {no_rls};
             {}{}{}{}
             SELECT pg_advisory_unlock(4242005);",
            tenant_db::rls::migration_sql::<gen_parents::table>().unwrap(),
            tenant_db::rls::migration_sql::<gen_children::table>().unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(app, "\"gen_parents\"").unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(app, "\"gen_children\"").unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(no_rls, "\"gen_parents\"").unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(no_rls, "\"gen_children\"").unwrap(),
        ))
        .await
        .unwrap();
    keys
}

async fn insert_child(
    db: &TenantDb,
    tenant: Tenant,
    id: i64,
    parent_id: i64,
) -> Result<usize, Error> {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        Ok::<_, Error>(
            s.insert(gen_children::table)
                .values(NewChild { id, parent_id })
                .execute(&mut tx)
                .await?,
        )
    })
    .await
}

fn detail(e: &Error) -> String {
    match e {
        Error::Query(diesel::result::Error::DatabaseError(_, info)) => {
            format!("{} / {}", info.message(), info.details().unwrap_or(""))
        }
        other => panic!("not a database error: {other}"),
    }
}

#[tokio::test]
async fn a_child_cannot_name_another_tenants_parent_and_the_error_does_not_say_it_exists() {
    let keys = set_up().await;
    // A foreign key whose two sides differ in length is an error, not SQL that fails later.
    let uneven = tenant_db::rls::composite_keys::<gen_children::table>()
        .foreign_key(
            (gen_children::parent_id, gen_children::id),
            gen_parents::table,
            gen_parents::id,
        )
        .sql();
    assert!(uneven.is_err(), "{uneven:?}");
    assert!(keys.contains("FOREIGN KEY (\"tenant_id\", \"parent_id\") REFERENCES \"gen_parents\" (\"tenant_id\", \"id\")"), "{keys}");
    let app = db_with_rls(2).await;
    let bypass = db_without_rls(2).await;
    let (a, b) = (keyed::new_tenant(), keyed::new_tenant());
    for (tenant, id) in [(a, 1), (b, 2)] {
        app.transaction(tenant, async |mut tx| {
            let s = tx.scope();
            // The same name in both tenants: unique per tenant.
            s.insert(gen_parents::table)
                .values(NewParent {
                    id,
                    name: "shared name".into(),
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    }
    for (role, db) in [("application role", &app), ("BYPASSRLS role", &bypass)] {
        // A's own parent: fine.
        assert_eq!(insert_child(db, a, 10, 1).await.unwrap(), 1, "{role}");
        // B's parent 2 exists; parent 3 exists nowhere: the same refusal, word for word once
        // the ids are set aside.
        let to_b = insert_child(db, a, 11, 2).await.expect_err(role);
        let to_none = insert_child(db, a, 12, 3).await.expect_err(role);
        assert!(
            matches!(
                to_b,
                Error::Query(diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::ForeignKeyViolation,
                    _
                ))
            ),
            "{role}: {to_b}"
        );
        assert_eq!(
            detail(&to_b).replace("=(", "").replace(", 2)", ", ?)"),
            detail(&to_none).replace("=(", "").replace(", 3)", ", ?)"),
            "{role}"
        );
        assert!(
            !detail(&to_b).contains(&b.id().to_string()),
            "{role}: {}",
            detail(&to_b)
        );
        // Clean up A's child for the next role.
        db.transaction(a, async |mut tx| {
            let s = tx.scope();
            s.delete(gen_children::table).execute(&mut tx).await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    }
}
