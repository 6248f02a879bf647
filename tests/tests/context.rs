//! Transaction-local context next to the tenant (`Tenant::with_context`), and a second
//! restrictive policy on it (`rls::context_policy_sql`): per-user rows inside a tenant, as the
//! application role. The context is sealed like the tenant: nothing a transaction runs changes
//! what the policy sees, it is gone when the transaction ends, and a transaction without it
//! sees no row of a table that requires it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    unreachable_pub,
    missing_docs
)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use tenant_db::context::Context;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb};
use uuid::Uuid;

diesel::table! {
    user_docs (tenant_id, id) {
        tenant_id -> Uuid,
        id -> BigInt,
        owner_id -> BigInt,
        body -> Text,
    }
}

#[derive(
    Debug, Clone, PartialEq, diesel::Queryable, diesel::Selectable, tenant_db::TenantTable,
)]
#[diesel(table_name = user_docs)]
pub struct Doc {
    pub tenant_id: Uuid,
    pub id: i64,
    pub owner_id: i64,
    pub body: String,
}

#[derive(Debug, Clone, diesel::Insertable, tenant_db::TenantValues)]
#[diesel(table_name = user_docs)]
pub struct NewDoc {
    pub id: i64,
    pub owner_id: i64,
    pub body: String,
}

async fn prepare() {
    static PREPARED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    PREPARED.get_or_init(create_docs).await;
}

async fn create_docs() {
    let mut owner = owner().await;
    owner
        .batch_execute(&format!(
            "SELECT pg_advisory_lock(4242006);
             CREATE TABLE IF NOT EXISTS user_docs (tenant_id uuid NOT NULL, id bigint NOT NULL,
                 owner_id bigint NOT NULL, body text NOT NULL, PRIMARY KEY (tenant_id, id));
             {}{}{}
             SELECT pg_advisory_unlock(4242006);",
            tenant_db::rls::migration_sql::<user_docs::table>().unwrap(),
            tenant_db::rls::context_policy_sql::<user_docs::owner_id>("user").unwrap(),
            tenant_db::roles::tenant_table_write_sql_for(
                tenant_db_tests::APP_ROLE,
                "\"user_docs\""
            )
            .unwrap(),
        ))
        .await
        .unwrap();
}

fn user(id: i64) -> Context {
    Context::new().set("user", id.to_string()).unwrap()
}

async fn write(
    db: &TenantDb,
    tenant: Tenant,
    user_id: i64,
    id: i64,
    owner_id: i64,
) -> Result<(), Error> {
    let context = user(user_id);
    db.transaction(tenant.with_context(&context), async |mut tx| {
        tx.scope()
            .insert(user_docs::table)
            .values(NewDoc {
                id,
                owner_id,
                body: format!("doc {id} of {owner_id}"),
            })
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await
}

async fn ids(db: &TenantDb, tenant: Tenant, context: Option<&Context>) -> Vec<i64> {
    try_ids(db, tenant, context).await.unwrap()
}

/// [`ids`], or the error the read ended with.
async fn try_ids(
    db: &TenantDb,
    tenant: Tenant,
    context: Option<&Context>,
) -> Result<Vec<i64>, Error> {
    let read = async |mut tx: tenant_db::TenantTx<'_>| {
        let s = tx.scope();
        Ok::<_, Error>(
            s.query(user_docs::table)
                .select(user_docs::id)
                .order(user_docs::id)
                .load(&mut tx)
                .await?,
        )
    };
    match context {
        Some(c) => db.transaction(tenant.with_context(c), read).await,
        None => db.transaction(tenant, read).await,
    }
}

/// A hostile context value was sealed as one value: the policy casts it to the column's type,
/// so the read either fails that cast or sees no row.
fn assert_no_row_for(value: &str, read: Result<Vec<i64>, String>) {
    match read {
        Ok(ids) => assert_eq!(ids, Vec::<i64>::new(), "another user's rows for {value:?}"),
        Err(e) => assert!(e.contains("invalid input syntax for type bigint"), "{e}"),
    }
}

/// A tenant with docs 1, 2 of user 1 and doc 3 of user 2.
async fn seeded(db: &TenantDb) -> Tenant {
    let tenant = keyed::new_tenant();
    for (user_id, id) in [(1, 1), (1, 2), (2, 3)] {
        write(db, tenant, user_id, id, user_id).await.unwrap();
    }
    tenant
}

#[tokio::test]
async fn each_user_sees_and_writes_only_their_rows() {
    prepare().await;
    let db = db_with_rls(2).await;
    let a = seeded(&db).await;
    assert_eq!(ids(&db, a, Some(&user(1))).await, [1, 2]);
    assert_eq!(ids(&db, a, Some(&user(2))).await, [3]);
    assert_eq!(ids(&db, a, Some(&user(3))).await, Vec::<i64>::new());
    // Without the context the table shows nothing (fail closed), and another tenant's user 1
    // sees nothing of A's user 1.
    assert_eq!(ids(&db, a, None).await, Vec::<i64>::new());
    let b = seeded(&db).await;
    assert_eq!(ids(&db, b, Some(&user(1))).await, [1, 2]);
    // Writing a row for another user fails the policy's check.
    let err = write(&db, a, 1, 9, 2).await.unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    // Updates and deletes reach only the user's rows.
    let context = user(2);
    let touched = db
        .transaction(a.with_context(&context), async |mut tx| {
            let s = tx.scope();
            let updated = s
                .update(user_docs::table)
                .set(tenant_db::values!(user_docs::table, user_docs::body = "x"))
                .execute(&mut tx)
                .await?;
            let deleted = s
                .delete(user_docs::table)
                .filter(user_docs::id.eq(1))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((updated, deleted))
        })
        .await
        .unwrap();
    assert_eq!(touched, (1, 0));
}

#[tokio::test]
async fn code_inside_the_transaction_cannot_change_the_context() {
    prepare().await;
    let db = db_with_rls(1).await;
    let a = seeded(&db).await;
    let context = user(1);
    // The plain copy, `app.user`, is the transaction's to change; the policy does not read it.
    for forge in [
        "SELECT set_config('app.user', '2', true)",
        "SET LOCAL app.\"user\" = '2'",
        "SELECT set_config('app.user', '2', false)",
    ] {
        let (seen, copy) = db
            .transaction(a.with_context(&context), async |mut tx| {
                tx.unscoped_execute(diesel::sql_query(forge)).await?;
                let s = tx.scope();
                let seen: Vec<i64> = s
                    .query(user_docs::table)
                    .select(user_docs::id)
                    .order(user_docs::id)
                    .load(&mut tx)
                    .await?;
                #[derive(diesel::QueryableByName)]
                struct Copy {
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    value: String,
                }
                let copy: Vec<Copy> = tx
                    .unscoped_load(diesel::sql_query(
                        "SELECT current_setting('app.user') AS value",
                    ))
                    .await?;
                Ok::<_, Error>((seen, copy[0].value.clone()))
            })
            .await
            .unwrap();
        assert_eq!((seen, copy.as_str()), (vec![1, 2], "2"), "{forge}");
    }
    // Calling the sealing function again is refused: it runs only in the first message.
    let err = db
        .transaction(a.with_context(&context), async |mut tx| {
            tx.unscoped_execute(diesel::sql_query(
                "SELECT tenant_db.enter_context(ARRAY['user'], ARRAY['2'])",
            ))
            .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("first statement"), "{err}");
    // And a transaction without the context still sees nothing.
    assert_eq!(ids(&db, a, None).await, Vec::<i64>::new());
}

#[tokio::test]
async fn the_context_is_gone_when_the_transaction_ends() {
    prepare().await;
    let db = db_with_rls(1).await;
    let a = seeded(&db).await;
    // Inside, the plain copy `app.user` says the user too (for logs). (The escape hatch closes
    // its connection when the transaction ends, so this runs first.)
    let context = user(1);
    let copy = db
        .transaction(a.with_context(&context), async |mut tx| {
            #[derive(diesel::QueryableByName)]
            struct Copy {
                #[diesel(sql_type = diesel::sql_types::Text)]
                value: String,
            }
            let copy: Vec<Copy> = tx
                .unscoped_load(diesel::sql_query(
                    "SELECT current_setting('app.user') AS value",
                ))
                .await?;
            Ok::<_, Error>(copy[0].value.clone())
        })
        .await
        .unwrap();
    assert_eq!(copy, "1");
    diesel::define_sql_function!(fn pg_backend_pid() -> diesel::sql_types::Integer);
    let (rows, pid) = db
        .transaction(a.with_context(&context), async |mut tx| {
            let s = tx.scope();
            let rows: Vec<(i64, i32)> = s
                .query(user_docs::table)
                .select((user_docs::id, pg_backend_pid()))
                .order(user_docs::id)
                .load(&mut tx)
                .await?;
            Ok::<_, Error>((rows.iter().map(|r| r.0).collect::<Vec<_>>(), rows[0].1))
        })
        .await
        .unwrap();
    assert_eq!(rows, [1, 2]);
    // The same (only) connection, next transaction, no context.
    let (seen, setting, next_pid) = db
        .transaction(a, async |mut tx| {
            #[derive(diesel::QueryableByName)]
            struct Setting {
                #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                value: Option<String>,
            }
            #[derive(diesel::QueryableByName)]
            struct Pid {
                #[diesel(sql_type = diesel::sql_types::Integer)]
                pid: i32,
            }
            let s = tx.scope();
            let seen: Vec<i64> = s
                .query(user_docs::table)
                .select(user_docs::id)
                .load(&mut tx)
                .await?;
            let setting: Vec<Setting> = tx
                .unscoped_load(diesel::sql_query(
                    "SELECT NULLIF(current_setting('app.user', true), '') AS value",
                ))
                .await?;
            let pid: Vec<Pid> = tx
                .unscoped_load(diesel::sql_query("SELECT pg_backend_pid() AS pid"))
                .await?;
            Ok::<_, Error>((seen, setting[0].value.clone(), pid[0].pid))
        })
        .await
        .unwrap();
    assert_eq!(next_pid, pid, "not the connection that held the context");
    assert_eq!((seen, setting), (vec![], None));
}

#[tokio::test]
async fn one_flight_carries_the_context() {
    prepare().await;
    let db = db_with_rls(1).await;
    let a = seeded(&db).await;
    let context = user(2);
    let seen: Vec<i64> = db
        .single(a.with_context(&context), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(user_docs::table)
                    .select(user_docs::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(seen, [3]);
}

#[tokio::test]
async fn the_doctor_keeps_the_context_policy() {
    prepare().await;
    let config = tenant_db::doctor::DoctorConfig {
        registered: vec![("public".into(), "user_docs".into(), "tenant_id".into())],
        ..Default::default()
    };
    let url = tenant_db_tests::url_for(tenant_db_tests::APP_ROLE, DATABASE);
    let report = tenant_db::doctor::audit_url(&url, &config).await.unwrap();
    let about: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.table.contains("user_docs"))
        .collect();
    assert!(about.is_empty(), "{about:#?}");
}

#[tokio::test]
async fn the_context_is_sealed_only_after_a_tenant_and_with_checked_names() {
    use diesel_async::AsyncConnection;
    prepare().await;
    let url = tenant_db_tests::url_for(tenant_db_tests::APP_ROLE, DATABASE);
    let mut conn = diesel_async::AsyncPgConnection::establish(&url)
        .await
        .unwrap();
    let tenant = keyed::new_tenant_id();
    for (first_message, refusal) in [
        (
            "BEGIN; SELECT tenant_db.enter_context(ARRAY['user'], ARRAY['1'])".to_string(),
            "after tenant_db.enter",
        ),
        (
            format!(
                "{}; SELECT tenant_db.enter_context(ARRAY['user', 'role'], ARRAY['1'])",
                tenant_db::seal::begin_sql(&tenant)
            ),
            "one value per name",
        ),
        (
            format!(
                "{}; SELECT tenant_db.enter_context(ARRAY['current_tenant'], ARRAY['1'])",
                tenant_db::seal::begin_sql(&tenant)
            ),
            "bad name",
        ),
        (
            format!(
                "{}; SELECT tenant_db.enter_context(ARRAY['x.y'], ARRAY['1'])",
                tenant_db::seal::begin_sql(&tenant)
            ),
            "bad name",
        ),
        (
            format!(
                "{}; SELECT tenant_db.enter_context(ARRAY['user'], ARRAY[''])",
                tenant_db::seal::begin_sql(&tenant)
            ),
            "empty value",
        ),
    ] {
        let err = conn.batch_execute(&first_message).await.unwrap_err();
        assert!(err.to_string().contains(refusal), "{first_message}: {err}");
        conn.batch_execute("ROLLBACK").await.unwrap();
    }
    // Read in the first message, the context is NULL (like the tenant).
    #[derive(diesel::QueryableByName)]
    struct Read {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        value: Option<String>,
    }
    conn.batch_execute(&format!(
        "{}; SELECT tenant_db.enter_context(ARRAY['user'], ARRAY['7']); \
         SELECT set_config('app.first_read', COALESCE(tenant_db.context('user'), 'NULL'), true)",
        tenant_db::seal::begin_sql(&tenant)
    ))
    .await
    .unwrap();
    let read: Vec<Read> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT current_setting('app.first_read') AS value \
             UNION ALL SELECT tenant_db.context('user')",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    conn.batch_execute("ROLLBACK").await.unwrap();
    let read: Vec<_> = read.into_iter().map(|r| r.value).collect();
    assert_eq!(read, [Some("NULL".to_string()), Some("7".to_string())]);
}

#[tokio::test]
async fn a_context_value_is_one_value_whatever_the_string_settings() {
    prepare().await;
    let db = db_with_rls(1).await;
    let tenant = seeded(&db).await;
    let other = seeded(&db).await;
    // The application role turns standard_conforming_strings off for itself, for every later
    // connection (a role default it may set through the escape hatch): in '…', a backslash now
    // escapes the quote after it.
    let database = tenant_db_tests::fresh::database(DATABASE);
    db.transaction(tenant, async |mut tx| {
        tx.unscoped_execute(diesel::sql_query(format!(
            "ALTER ROLE CURRENT_USER IN DATABASE \"{database}\" SET standard_conforming_strings = off"
        )))
        .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    // Values that would end the literal and run more of the first message: seal user 1 for
    // user 5, or enter another tenant.
    let values = [
        "5\\']::text[]); SELECT tenant_db.enter_context(ARRAY[$$user$$]::text[], ARRAY[$$1$$]::text[]) --".to_string(),
        format!(
            "5\\']::text[]); SELECT tenant_db.enter($${}$$, $$uuid$$); \
             SELECT tenant_db.enter_context(ARRAY[$$user$$]::text[], ARRAY[$$1$$]::text[]) --",
            other.id()
        ),
        "\\".to_string(),
        "\\'".to_string(),
        "a\\\\'b''\\".to_string(),
    ];
    let fresh = TenantDb::connect(&app_url().await, 1).unwrap();
    let mut outcomes = Vec::new();
    for value in &values {
        let context = Context::new().set("user", value.as_str()).unwrap();
        let seen = fresh
            .transaction(tenant.with_context(&context), async |mut tx| {
                #[derive(diesel::QueryableByName)]
                struct Seen {
                    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
                    user: Option<String>,
                    #[diesel(sql_type = diesel::sql_types::Text)]
                    strings: String,
                }
                let seen: Seen = tx
                    .unscoped_load(diesel::sql_query(
                        "SELECT tenant_db.context('user') AS user,
                                current_setting('standard_conforming_strings') AS strings",
                    ))
                    .await?
                    .pop()
                    .ok_or(Error::Query(diesel::result::Error::NotFound))?;
                Ok::<_, Error>((seen.user, seen.strings))
            })
            .await;
        let rows = try_ids(&fresh, tenant, Some(&context)).await;
        outcomes.push((seen, rows.map_err(|e| e.to_string())));
    }
    let mut admin = diesel_async::AsyncPgConnection::establish(&tenant_db_tests::admin_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "ALTER ROLE {} IN DATABASE \"{database}\" RESET standard_conforming_strings",
            tenant_db_tests::APP_ROLE
        ))
        .await
        .unwrap();
    for (value, (seen, rows)) in values.iter().zip(outcomes) {
        // The value sealed is the value given, and no row is seen with it.
        assert_eq!(
            seen.unwrap(),
            (Some(value.clone()), "off".to_string()),
            "{value}"
        );
        assert_no_row_for(value, rows);
    }
}

#[tokio::test]
async fn a_context_value_is_one_value_whatever_the_client_encoding() {
    prepare().await;
    // One connection: what a transaction leaves on its session, the next one meets.
    let db = db_with_rls(1).await;
    let tenant = seeded(&db).await;
    // A transaction switches its session to an encoding where a backslash byte can end a
    // character (SJIS: 0x81 0x5C is one character), and so hide from the quoting.
    db.transaction(tenant, async |mut tx| {
        tx.unscoped_execute(diesel::sql_query("SET client_encoding = 'SJIS'"))
            .await?;
        Ok::<_, Error>(())
    })
    .await
    .unwrap();
    #[derive(diesel::QueryableByName, Debug)]
    struct Enc {
        #[diesel(sql_type = diesel::sql_types::Text)]
        e: String,
    }
    let enc = db
        .transaction(tenant, async |mut tx| {
            let rows: Vec<Enc> = tx
                .unscoped_load(diesel::sql_query(
                    "SELECT current_setting('client_encoding') AS e",
                ))
                .await?;
            Ok::<_, Error>(rows)
        })
        .await;
    // A connection that ran the escape hatch is not reused, and a new one asks for UTF8.
    assert_eq!(enc.unwrap()[0].e, "UTF8");
    // "ぁ" is E3 81 81 in UTF-8: in SJIS, 81 takes the backslash after it as its second byte.
    let value = "\u{3041}\\']::text[]); SELECT tenant_db.enter_context(ARRAY[$$user$$]::text[], ARRAY[$$1$$]::text[]) --";
    let context = Context::new().set("user", value).unwrap();
    let seen = try_ids(&db, tenant, Some(&context)).await;
    assert_no_row_for(value, seen.map_err(|e| e.to_string()));
}
