//! Hostile names in the SQL builders: quotes, backslashes, dollar signs (and tenant-db's own
//! dollar-quote tag), Unicode, SQL keywords, names up to PostgreSQL's 63 bytes. Run on the real
//! server, each builder's SQL must do exactly what it says: `quote_literal`/`quote_ident` round
//! trip, and `create_roles_sql` creates exactly the two roles named (inside a transaction that
//! is rolled back). Names PostgreSQL cannot hold as given (empty, NUL, over 63 bytes, which it
//! would cut) are a typed error from every builder that takes a name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use diesel::QueryableByName;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use proptest::prelude::*;
use tenant_db::rls::{quote_ident, quote_literal};

/// Names PostgreSQL can hold: no NUL, 1 to 63 bytes, made of the characters that break naive
/// quoting, and tenant-db's own dollar-quote tag.
fn hostile() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'",
        "\"",
        "\\",
        "$",
        "$$",
        "$tenant_db$",
        "$tenant_db1$",
        ";",
        "--",
        "/*",
        "*/",
        "é",
        "名",
        "🦀",
        " ",
        "\n",
        "SELECT",
        "DROP ROLE postgres",
        "END",
        "%I",
        "%s",
        "a",
        "Z",
        "0",
    ]);
    prop::collection::vec(pieces, 1..8).prop_map(|p| {
        let mut s = p.concat();
        while s.len() > 63 {
            s.pop();
        }
        if s.is_empty() { "x".to_string() } else { s }
    })
}

/// Any name: hostile pieces and NUL, from empty to well over 63 bytes.
fn any_name() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "'",
        "\"",
        "\\",
        "$tenant_db$",
        ";",
        "é",
        "名",
        "🦀",
        " ",
        "\0",
        "a",
        "Z",
        "0",
        "abcdefghijklmnop",
    ]);
    prop::collection::vec(pieces, 0..12).prop_map(|p| p.concat())
}

/// Whether PostgreSQL keeps `name` as given.
fn holdable(name: &str) -> bool {
    !name.is_empty() && name.len() <= 63 && !name.contains('\0')
}

#[test]
fn two_long_names_that_postgresql_would_cut_to_one_are_refused() {
    // Cut to 63 bytes, the owner and the application role would be one role: the application
    // would connect as the owner of the tables.
    let stem = "r".repeat(63);
    let (owner, app) = (format!("{stem}_owner"), format!("{stem}_app"));
    match tenant_db::roles::create_roles_sql(&owner, &app, "60s") {
        Err(tenant_db::rls::NameError::TooLong { len: 69, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert!(tenant_db::roles::create_roles_sql(&stem, "app", "60s").is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn every_builder_refuses_a_name_postgresql_cannot_hold(a in any_name(), b in any_name(), c in any_name()) {
        use tenant_db::{admin, lifecycle, placement, roles};
        let ok = |names: &[&str]| names.iter().all(|n| holdable(n));
        let table = "\"t\"";
        let cases: Vec<(bool, Result<String, tenant_db::rls::NameError>)> = vec![
            (ok(&[&a, &b]), roles::create_roles_sql(&a, &b, "60s")),
            (ok(&[&a, &b]) && !c.contains('\0'), roles::create_roles_sql(&a, &b, &c)),
            (ok(&[&a, &b, &c]), roles::database_sql(&a, &b, &c)),
            (ok(&[&a, &b, &c]), roles::grants_sql(&a, &b, &c)),
            (ok(&[&a]), roles::tenant_table_write_sql_for(&a, table)),
            (ok(&[&a]), roles::global_table_write_sql(&a, table)),
            (ok(&[&a]), admin::setup_sql(&a)),
            (ok(&[&a]) && a.len() <= 63 - "_views".len(), admin::views_role(&a)),
            (ok(&[&a]), lifecycle::setup_sql(&a)),
            (ok(&[&a]), placement::fence::lock_guard_sql(&a)),
            (ok(&[&a]), placement::fence::lock_revoke_sql(&a)),
            (ok(&[&a]), placement::directory::setup_sql(&a)),
            (ok(&[&a]), tenant_db::rls::ident("role", &a)),
            (!a.contains('\0'), tenant_db::rls::literal("text", &a)),
        ];
        for (i, (holdable, built)) in cases.into_iter().enumerate() {
            prop_assert_eq!(built.is_ok(), holdable, "case {} with {:?} / {:?} / {:?}: {:?}", i, a, b, c, built);
            if let Ok(sql) = built {
                prop_assert!(!sql.contains('\0'), "case {}", i);
            }
        }
    }
}

#[derive(QueryableByName, Debug)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

#[derive(QueryableByName, Debug)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

async fn admin() -> AsyncPgConnection {
    tenant_db_tests::provision("tenant_db_hostile_test", "", &[])
        .await
        .unwrap();
    AsyncPgConnection::establish(&tenant_db_tests::admin_url_for("tenant_db_hostile_test"))
        .await
        .unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn quoting_round_trips(value in hostile(), name in hostile()) {
        runtime().block_on(async {
            let mut conn = admin().await;
            // Any role may turn standard_conforming_strings off for itself, where a backslash
            // in '…' escapes: a literal must read the same either way.
            for setting in ["on", "off"] {
                conn.batch_execute(&format!("SET standard_conforming_strings = {setting}"))
                    .await
                    .unwrap();
                let row: Result<Row, _> = diesel::sql_query(format!(
                    "SELECT v FROM (SELECT {} AS {}) t(v)",
                    quote_literal(&value),
                    quote_ident(&name)
                ))
                .get_result(&mut conn)
                .await;
                match row {
                    Ok(row) => assert_eq!(row.v, value, "standard_conforming_strings {setting}"),
                    Err(e) => panic!("{value:?} with standard_conforming_strings {setting}: {e}"),
                }
            }
        });
    }

    #[test]
    fn create_roles_creates_exactly_the_roles_named(owner in hostile(), app in hostile()) {
        prop_assume!(owner != app);
        runtime().block_on(async {
            let mut conn = admin().await;
            let count = "SELECT count(*) AS n FROM pg_roles";
            let before: Count = diesel::sql_query(count).get_result(&mut conn).await.unwrap();
            conn.batch_execute("BEGIN").await.unwrap();
            let applied = conn
                .batch_execute(&tenant_db::roles::create_roles_sql(&owner, &app, "60s").unwrap())
                .await;
            let after: Result<Count, _> = diesel::sql_query(count).get_result(&mut conn).await;
            let named: Result<Count, _> = diesel::sql_query(format!(
                "SELECT count(*) AS n FROM pg_roles WHERE rolname IN ({}, {})",
                quote_literal(&owner),
                quote_literal(&app)
            ))
            .get_result(&mut conn)
            .await;
            conn.batch_execute("ROLLBACK").await.unwrap();
            applied.unwrap_or_else(|e| panic!("{owner:?} / {app:?}: {e}"));
            assert_eq!(after.unwrap().n, before.n + 2, "{owner:?} / {app:?}");
            assert_eq!(named.unwrap().n, 2, "{owner:?} / {app:?}");
        });
    }

    #[test]
    fn grants_grant_exactly_on_the_schema_named(owner in hostile(), app in hostile(), schema in hostile()) {
        prop_assume!(owner != app);
        prop_assume!(!schema.starts_with("pg_"));
        runtime().block_on(async {
            let mut conn = admin().await;
            conn.batch_execute("BEGIN").await.unwrap();
            let set_up = conn
                .batch_execute(&format!(
                    // CREATE granted beforehand: the grants take it away.
                    "{}CREATE SCHEMA {s} AUTHORIZATION {}; GRANT CREATE ON SCHEMA {s} TO {};",
                    tenant_db::roles::create_roles_sql(&owner, &app, "60s").unwrap(),
                    quote_ident(&owner),
                    quote_ident(&app),
                    s = quote_ident(&schema),
                ))
                .await;
            // Run as the owner, as documented; the owner's migrations table is in the schema.
            let granted = match set_up {
                Ok(()) => {
                    conn.batch_execute(&format!(
                        "SET LOCAL ROLE {}; CREATE TABLE {}.{} (id int);",
                        quote_ident(&owner),
                        quote_ident(&schema),
                        quote_ident("__diesel_schema_migrations"),
                    ))
                    .await
                    .unwrap();
                    conn.batch_execute(&tenant_db::roles::grants_sql(&owner, &app, &schema).unwrap())
                        .await
                }
                Err(e) => Err(e),
            };
            let usage: Result<Count, _> = diesel::sql_query(format!(
                "SELECT (has_schema_privilege({app}, {schema}, 'USAGE')::int
                         + has_schema_privilege({app}, {schema}, 'CREATE')::int * 10
                         + has_table_privilege({app}, {migrations}, 'SELECT')::int * 100)::bigint AS n",
                app = quote_literal(&app),
                schema = quote_literal(&schema),
                migrations = quote_literal(&format!(
                    "{}.{}",
                    quote_ident(&schema),
                    quote_ident("__diesel_schema_migrations")
                )),
            ))
            .get_result(&mut conn)
            .await;
            conn.batch_execute("ROLLBACK").await.unwrap();
            granted.unwrap_or_else(|e| panic!("{owner:?} / {app:?} / {schema:?}: {e}"));
            // USAGE on the schema, no CREATE, nothing on the migrations table.
            assert_eq!(usage.unwrap().n, 1, "{owner:?} / {app:?} / {schema:?}");
        });
    }
}
