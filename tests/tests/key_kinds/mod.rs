//! Checks that hold for every tenant key type, included by each isolation binary: the premises
//! (the schema really has this key type; the test role really bypasses RLS) and the attacks that
//! confuse one kind of tenant key with another.

use crate::common::*;
use crate::keyed::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tenant_db::guard::Refusal;
use tenant_db::prelude::*;
use tenant_db::{Error, KeyKind, Tenant, TenantId};

#[derive(diesel::QueryableByName)]
struct N {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Column {
    #[diesel(sql_type = Text)]
    data_type: String,
}

/// The tenant columns' type.
fn key_type() -> tenant_db::KeyType {
    <customers::table as TenantTable>::KEY_TYPE
}

/// A new tenant of this schema whose key also spells a tenant of another kind: for text keys,
/// a slug that is a UUID.
fn spelled_like_another_kind() -> Tenant {
    let tenant = new_tenant_id();
    Tenant::assume_verified(match tenant.kind() {
        KeyKind::Text => TenantId::from_text(&uuid::Uuid::new_v4().to_string()).unwrap(),
        _ => tenant,
    })
}

/// The tenant of another kind that `tenant` spells.
fn confusable(tenant: &Tenant) -> Tenant {
    Tenant::assume_verified(match tenant.id().kind() {
        KeyKind::Text => tenant.to_string().parse().unwrap(),
        _ => TenantId::from_text(&tenant.to_string()).unwrap(),
    })
}

#[tokio::test]
async fn the_schema_has_this_key_type_and_the_test_role_bypasses_rls() {
    let url = app_url().await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let columns: Vec<Column> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT data_type::text AS data_type FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name IN ('customers', 'orders') \
             AND column_name = 'tenant_id'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    assert_eq!(columns.len(), 2);
    assert!(
        columns.iter().all(|c| c.data_type == key_type().sql_name()),
        "expected {} tenant columns",
        key_type()
    );

    let db = db_without_rls(2).await;
    let (a, _b) = two_tenants(&db).await;
    let seen: Vec<N> = load_raw(
        &db,
        a,
        "SELECT count(DISTINCT tenant_id) AS n FROM customers",
    )
    .await;
    assert!(
        seen[0].n >= 2,
        "the BYPASSRLS role must see several tenants"
    );
}

/// What a transaction for `attacker` gets from `customers`: the scoped query's result, and the
/// row count the same transaction reads through the escape hatch.
async fn attack(
    db: &TenantDb,
    attacker: Tenant,
) -> (Result<i64, Error>, Result<usize, Error>, i64) {
    db.transaction(attacker, async |mut tx| {
        let s = tx.scope();
        let scoped = s
            .query(customers::table)
            .count()
            .get_result::<i64>(&mut tx)
            .await
            .map_err(Error::from);
        let inserted = s
            .insert(customers::table)
            .values(NewCustomer {
                id: 500,
                name: "smuggled".into(),
                email: None,
            })
            .execute(&mut tx)
            .await
            .map_err(Error::from);
        let raw: Vec<N> = tx
            .unscoped_load(diesel::sql_query("SELECT count(*) AS n FROM customers"))
            .await?;
        Ok::<_, Error>((scoped, inserted, raw[0].n))
    })
    .await
    .unwrap()
}

fn is_key_type_refusal<T: std::fmt::Debug>(r: &Result<T, Error>, attacker: &Tenant) -> bool {
    matches!(
        r,
        Err(Error::Refused(refused)) if refused.reason == Refusal::KeyType {
            column: key_type(),
            tenant: attacker.id().kind(),
        }
    )
}

#[tokio::test]
async fn a_tenant_of_another_kind_spelled_the_same_sees_and_writes_nothing() {
    let db = db_with_rls(2).await;
    let victim = spelled_like_another_kind();
    seed(&db, victim, "v").await;
    let attacker = confusable(&victim);
    assert_eq!(attacker.to_string(), victim.to_string());
    assert_ne!(attacker.id().kind(), victim.id().kind());

    let (scoped, inserted, raw) = attack(&db, attacker).await;
    assert!(is_key_type_refusal(&scoped, &attacker), "{scoped:?}");
    assert!(is_key_type_refusal(&inserted, &attacker), "{inserted:?}");
    // RLS: the transaction has no tenant of this table's kind, so it sees no row at all.
    assert_eq!(raw, 0);

    // Through the escape hatch, a row for the victim's key is refused by WITH CHECK.
    let smuggled = db
        .transaction(attacker, async |mut tx| {
            Ok::<_, Error>(
                tx.unscoped_execute(diesel::sql_query(format!(
                    "INSERT INTO customers (tenant_id, id, name) VALUES ('{victim}', 501, 'x')"
                )))
                .await?,
            )
        })
        .await;
    assert!(smuggled.is_err(), "WITH CHECK must refuse: {smuggled:?}");
}

#[tokio::test]
async fn without_rls_a_tenant_of_another_kind_is_still_refused_before_sending() {
    let db = db_without_rls(2).await;
    let victim = spelled_like_another_kind();
    seed(&db, victim, "v").await;
    let attacker = confusable(&victim);
    let (scoped, inserted, _raw) = attack(&db, attacker).await;
    assert!(is_key_type_refusal(&scoped, &attacker), "{scoped:?}");
    assert!(is_key_type_refusal(&inserted, &attacker), "{inserted:?}");
}

#[derive(diesel::QueryableByName)]
struct Current {
    #[diesel(sql_type = Nullable<Text>)]
    uuid: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    int: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    text: Option<String>,
}

#[tokio::test]
async fn enter_takes_only_a_key_of_its_kind_and_seals_only_that_kind() {
    let url = app_url().await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    for (tenant, kind) in [
        ("abc", "int"),
        ("0", "int"),
        ("-5", "int"),
        ("1", "uuid"),
        ("00000000-0000-4000-8000-00000000000x", "uuid"),
        ("acme", "bogus"),
        ("acme", "uuid_int"),
        ("", "text"),
    ] {
        let entered = conn
            .batch_execute(&format!(
                "BEGIN; SELECT tenant_db.enter('{tenant}', '{kind}')"
            ))
            .await;
        let _ = conn.batch_execute("ROLLBACK").await;
        assert!(entered.is_err(), "enter({tenant:?}, {kind:?}) must fail");
    }
    for (tenant, expected) in [
        (TenantId::parse_int("42").unwrap(), (None, Some("42"), None)),
        (
            TenantId::parse_text("acme").unwrap(),
            (None, None, Some("acme")),
        ),
        (
            "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01".parse().unwrap(),
            (Some("7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01"), None, None),
        ),
    ] {
        conn.batch_execute(&tenant_db::seal::begin_sql(&tenant))
            .await
            .unwrap();
        let current: Current = diesel_async::RunQueryDsl::get_result(
            diesel::sql_query(
                "SELECT tenant_db.current_tenant() AS uuid, tenant_db.current_tenant('int') AS int, \
                 tenant_db.current_tenant('text') AS text",
            ),
            &mut conn,
        )
        .await
        .unwrap();
        conn.batch_execute("ROLLBACK").await.unwrap();
        assert_eq!(
            (
                current.uuid.as_deref(),
                current.int.as_deref(),
                current.text.as_deref()
            ),
            expected,
            "{tenant:?}"
        );
    }
}
