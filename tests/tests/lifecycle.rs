//! A tenant's life on real databases, next to other tenants with the same ids: onboarding once,
//! export then import then compare (lossless, into another database and another id), imports
//! that must not land, and deletion that leaves nothing of the tenant and everything of the
//! others.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel_async::{AsyncConnection, AsyncPgConnection};
use std::sync::atomic::{AtomicUsize, Ordering};
use tenant_db::lifecycle::{self, Onboarded, TableCount};
use tenant_db::prelude::*;
use tenant_db::registry::Registry;
use tenant_db::{Error, TenantDb, values};
use tenant_db_tests::schema as keyed;
use tenant_db_tests::schema::*;
mod common;

const IMPORT_DATABASE: &str = "tenant_db_test_import";

fn registry() -> Registry {
    Registry::collected_under("tenant_db_tests::schema").unwrap()
}

async fn conn() -> AsyncPgConnection {
    AsyncPgConnection::establish(&common::app_url().await)
        .await
        .unwrap()
}

async fn import_conn() -> AsyncPgConnection {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let url = URL
        .get_or_init(|| async {
            tenant_db_tests::provision(IMPORT_DATABASE, &schema_sql(), TENANT_TABLES)
                .await
                .unwrap()
        })
        .await;
    AsyncPgConnection::establish(url).await.unwrap()
}

async fn export(conn: &mut AsyncPgConnection, tenant: Tenant) -> Vec<u8> {
    let mut out = Vec::new();
    lifecycle::export(conn, &registry(), tenant, &mut out)
        .await
        .unwrap();
    out
}

/// The exported rows without their tenant column, and without the manifest.
fn rows_without_tenant(export: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8(export.to_vec())
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("{\"manifest\""))
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["row"].as_object_mut().unwrap().remove("tenant_id");
            v
        })
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> Vec<TableCount> {
    pairs
        .iter()
        .map(|(t, n)| TableCount {
            table: t.to_string(),
            rows: *n,
        })
        .collect()
}

#[tokio::test]
async fn export_then_import_then_compare_is_lossless_across_databases_and_ids() {
    let db = common::db_with_rls(2).await;
    let (a, b) = common::two_tenants(&db).await;
    let mut source = conn().await;
    let before_b = export(&mut source, b).await;
    let exported = export(&mut source, a).await;
    let text = String::from_utf8(exported.clone()).unwrap();
    // Referenced table first, then the manifest, last.
    let first_orders = text.find(r#""\"orders\"""#).unwrap();
    assert!(text.find(r#""\"customers\"""#).unwrap() < first_orders);
    let manifest: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(manifest["manifest"]["tenant"], a.id().to_string());
    assert_eq!(
        manifest["manifest"]["tables"],
        serde_json::json!([{"table": "\"customers\"", "rows": 3}, {"table": "\"orders\"", "rows": 3}])
    );
    assert_eq!(text.lines().count(), 7);

    // Into another database, as a new tenant; and into this one, as another new tenant.
    for (mut target, name) in [
        (import_conn().await, "other database"),
        (conn().await, "same database"),
    ] {
        let c = keyed::new_tenant();
        let manifest = lifecycle::import(&mut target, &registry(), c, exported.as_slice())
            .await
            .unwrap();
        assert_eq!(
            manifest.tables,
            counts(&[("\"customers\"", 3), ("\"orders\"", 3)])
        );
        let reexported = export(&mut target, c).await;
        assert_eq!(
            rows_without_tenant(&reexported),
            rows_without_tenant(&exported),
            "{name}"
        );
        assert!(
            String::from_utf8(reexported)
                .unwrap()
                .contains(&c.id().to_string())
        );
    }
    // The source tenants are as they were.
    assert_eq!(export(&mut source, a).await, exported);
    assert_eq!(export(&mut source, b).await, before_b);
}

#[tokio::test]
async fn a_tenant_with_an_empty_table_round_trips() {
    let db = common::db_with_rls(2).await;
    let a = keyed::new_tenant();
    // Customers only: the orders table is empty, and the manifest says so.
    common::insert_customer(&db, a, 1, "only").await;
    let mut source = conn().await;
    let exported = export(&mut source, a).await;
    let c = keyed::new_tenant();
    let manifest = lifecycle::import(&mut source, &registry(), c, exported.as_slice())
        .await
        .unwrap();
    assert_eq!(
        manifest.tables,
        counts(&[("\"customers\"", 1), ("\"orders\"", 0)])
    );
    assert_eq!(
        rows_without_tenant(&export(&mut source, c).await),
        rows_without_tenant(&exported)
    );
}

#[tokio::test]
async fn an_import_that_does_not_match_its_manifest_writes_nothing() {
    let db = common::db_with_rls(2).await;
    let (a, b) = common::two_tenants(&db).await;
    let mut source = conn().await;
    let exported = String::from_utf8(export(&mut source, a).await).unwrap();
    let lines: Vec<&str> = exported.lines().collect();
    let tampered = exported.replacen("\"c1\"", "\"mallory\"", 1);
    assert_ne!(tampered, exported);
    let truncated = lines[..lines.len() - 1].join("\n");
    let reordered = [lines[1], lines[0]]
        .into_iter()
        .chain(lines[2..].iter().copied())
        .collect::<Vec<_>>()
        .join("\n");
    let foreign = exported.replacen(r#"\"customers\""#, r#"\"countries\""#, 1);
    assert_ne!(foreign, exported);
    let after = format!("{exported}{}\n", lines[0]);
    let cases = [
        (tampered.as_str(), "checksum"),
        (truncated.as_str(), "no manifest"),
        (reordered.as_str(), "checksum"),
        (foreign.as_str(), "not a registered tenant table"),
        (after.as_str(), "after the manifest"),
        ("{\"table\": 1}\n", "line 1"),
    ];
    for (input, why) in cases {
        let c = keyed::new_tenant();
        let mut target = import_conn().await;
        let result = lifecycle::import(&mut target, &registry(), c, input.as_bytes()).await;
        let err = match result {
            Ok(m) => panic!("{why}: imported {m:?} from\n{input}"),
            Err(e) => e,
        };
        assert!(err.to_string().contains(why), "{why}: {err}");
        // Nothing of it landed.
        assert_eq!(
            rows_without_tenant(&export(&mut target, c).await).len(),
            0,
            "{why}"
        );
    }
    // A tenant that already has rows is refused.
    let err = lifecycle::import(&mut source, &registry(), b, exported.as_bytes())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already has rows"), "{err}");
}

#[tokio::test]
async fn an_imported_row_belongs_to_the_target_tenant_whatever_the_file_says() {
    let db = common::db_with_rls(2).await;
    let (a, b) = common::two_tenants(&db).await;
    let mut source = conn().await;
    let before_b = export(&mut source, b).await;
    // An export whose rows name tenant B, with a manifest recomputed to match.
    let exported = String::from_utf8(export(&mut source, a).await).unwrap();
    let rows: Vec<String> = exported
        .lines()
        .filter(|l| !l.starts_with("{\"manifest\""))
        .map(|l| l.replace(&a.id().to_string(), &b.id().to_string()))
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let file = with_manifest(
        &rows,
        &b.id(),
        serde_json::json!([{"table": "\"customers\"", "rows": 3}, {"table": "\"orders\"", "rows": 3}]),
    );
    let c = keyed::new_tenant();
    lifecycle::import(&mut source, &registry(), c, file.as_bytes())
        .await
        .unwrap();
    assert_eq!(export(&mut source, b).await, before_b);
    assert_eq!(rows_without_tenant(&export(&mut source, c).await).len(), 6);
}

#[tokio::test]
async fn deletion_leaves_nothing_of_the_tenant_and_everything_of_the_others() {
    let db = common::db_with_rls(2).await;
    let (a, b) = common::two_tenants(&db).await;
    let (c, _) = common::two_tenants(&db).await;
    let mut conn = conn().await;
    let before_b = export(&mut conn, b).await;
    let before_c = export(&mut conn, c).await;
    let deleted = lifecycle::delete(&mut conn, &registry(), a, None)
        .await
        .unwrap();
    // Children first.
    assert_eq!(
        deleted.tables,
        counts(&[("\"orders\"", 3), ("\"customers\"", 3)])
    );
    assert_eq!(rows_without_tenant(&export(&mut conn, a).await).len(), 0);
    // In batches of one row: one transaction per row, same result.
    let deleted = lifecycle::delete(&mut conn, &registry(), c, Some(1))
        .await
        .unwrap();
    assert_eq!(
        deleted.tables,
        counts(&[("\"orders\"", 3), ("\"customers\"", 3)])
    );
    assert_eq!(rows_without_tenant(&export(&mut conn, c).await).len(), 0);
    // Again: nothing left to delete, nothing wrong.
    let again = lifecycle::delete(&mut conn, &registry(), c, Some(1))
        .await
        .unwrap();
    assert_eq!(
        again.tables,
        counts(&[("\"orders\"", 0), ("\"customers\"", 0)])
    );
    assert_eq!(export(&mut conn, b).await, before_b);
    assert_ne!(before_b, before_c);
}

#[tokio::test]
async fn onboarding_runs_the_seed_once_even_when_called_concurrently() {
    let db = common::db_with_rls(4).await;
    let tenant = keyed::new_tenant();
    let seeded = AtomicUsize::new(0);
    let onboard = || {
        lifecycle::onboard(&db, tenant, async |mut tx| {
            seeded.fetch_add(1, Ordering::SeqCst);
            let s = tx.scope();
            s.insert(customers::table)
                .values(NewCustomer {
                    id: 1,
                    name: "welcome".into(),
                    email: None,
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
    };
    let (first, second) = tokio::join!(onboard(), onboard());
    let mut outcomes = [first.unwrap(), second.unwrap()];
    outcomes.sort_by_key(|o| *o == Onboarded::Existing);
    assert_eq!(outcomes, [Onboarded::Created, Onboarded::Existing]);
    assert_eq!(onboard().await.unwrap(), Onboarded::Existing);
    // The losing concurrent call may have started its seed before it waited; only one
    // committed it.
    assert!(seeded.load(Ordering::SeqCst) >= 1);
    let mut conn = conn().await;
    assert_eq!(
        rows_without_tenant(&export(&mut conn, tenant).await).len(),
        1
    );

    // A failing seed rolls the onboarding back; the next call onboards.
    let other = keyed::new_tenant();
    let failed: Result<Onboarded, Error> = lifecycle::onboard(&db, other, async |mut tx| {
        let s = tx.scope();
        s.update(customers::table)
            .set(values!(customers::table, customers::name = "x"))
            .execute(&mut tx)
            .await?;
        Err(Error::Lifecycle("seed failed".into()))
    })
    .await;
    assert!(failed.is_err());
    let retried: Onboarded = lifecycle::onboard(&db, other, async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap();
    assert_eq!(retried, Onboarded::Created);
    // Deleting the tenant takes it out of the directory: it can be onboarded again.
    lifecycle::delete(&mut conn, &registry(), other, None)
        .await
        .unwrap();
    let again: Onboarded = lifecycle::onboard(&db, other, async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap();
    assert_eq!(again, Onboarded::Created);
}

/// `rows` (export lines without the manifest) with a manifest whose checksum matches them and
/// whose tables are `tables`.
fn with_manifest(rows: &[&str], tenant: &TenantId, tables: serde_json::Value) -> String {
    let mut hash = <sha2::Sha256 as sha2::Digest>::new();
    for r in rows {
        sha2::Digest::update(&mut hash, r.as_bytes());
        sha2::Digest::update(&mut hash, b"\n");
    }
    let sum: String = sha2::Digest::finalize(hash)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = serde_json::json!({"manifest": {"format": 1, "tenant": tenant.to_string(),
        "tables": tables, "sha256": sum}});
    format!("{}\n{manifest}\n", rows.join("\n"))
}

#[tokio::test]
async fn an_import_whose_counts_differ_from_its_manifest_writes_nothing() {
    let db = common::db_with_rls(2).await;
    let (a, _) = common::two_tenants(&db).await;
    let mut conn = conn().await;
    let exported = String::from_utf8(export(&mut conn, a).await).unwrap();
    let rows: Vec<&str> = exported
        .lines()
        .filter(|l| !l.starts_with("{\"manifest\""))
        .collect();
    // A checksum that matches, and counts that do not.
    let file = with_manifest(
        &rows,
        &a.id(),
        serde_json::json!([{"table": "\"customers\"", "rows": 3}, {"table": "\"orders\"", "rows": 4}]),
    );
    let c = keyed::new_tenant();
    let err = lifecycle::import(&mut conn, &registry(), c, file.as_bytes())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("row counts"), "{err}");
    assert_eq!(rows_without_tenant(&export(&mut conn, c).await).len(), 0);
}

#[tokio::test]
async fn a_deletion_that_leaves_rows_says_so() {
    // Its own database: a policy that keeps customers from being deleted (silently: the
    // delete finds no row it may delete).
    let url = tenant_db_tests::provision(
        "tenant_db_test_lifecycle_kept",
        &schema_sql(),
        TENANT_TABLES,
    )
    .await
    .unwrap();
    let mut owner = AsyncPgConnection::establish(&tenant_db_tests::url_for(
        tenant_db_tests::OWNER_ROLE,
        "tenant_db_test_lifecycle_kept",
    ))
    .await
    .unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut owner,
        "DROP POLICY IF EXISTS keep ON orders;
         DROP POLICY IF EXISTS keep ON customers;
         CREATE POLICY keep ON customers AS RESTRICTIVE FOR DELETE USING (false);",
    )
    .await
    .unwrap();
    let db = TenantDb::connect(&url, 1).unwrap();
    let (a, _) = common::two_tenants(&db).await;
    let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
    let err = lifecycle::delete(&mut conn, &registry(), a, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rows of tenant"), "{err}");
    assert!(err.to_string().contains("\"customers\""), "{err}");
}

/// A writer that, on its first line, lets another transaction insert and commit before the
/// export reads on.
struct Interfering {
    out: Vec<u8>,
    meanwhile: Option<Box<dyn FnOnce() + Send>>,
}

impl std::io::Write for Interfering {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(meanwhile) = self.meanwhile.take() {
            meanwhile();
        }
        self.out.write(bytes)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn an_export_reads_one_snapshot_while_the_tenant_writes() {
    let db = common::db_with_rls(1).await;
    let (a, _) = common::two_tenants(&db).await;
    let url = common::app_url().await;
    let tenant = a.id();
    // While the customers are being written out, the tenant commits a new order.
    let meanwhile = Box::new(move || {
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
                // The tenant's transaction, message by message as tenant-db sends it.
                for sql in [
                    tenant_db::seal::begin_sql(&tenant),
                    format!(
                        "INSERT INTO orders (tenant_id, id, customer_id, total_cents, country_code)
                         VALUES ('{tenant}', 99, 1, 1, 'FR')"
                    ),
                    "COMMIT".to_string(),
                ] {
                    diesel_async::SimpleAsyncConnection::batch_execute(&mut conn, &sql)
                        .await
                        .unwrap();
                }
            });
        })
        .join()
        .unwrap();
    });
    let mut writer = Interfering {
        out: Vec::new(),
        meanwhile: Some(meanwhile),
    };
    let mut conn = conn().await;
    let manifest = lifecycle::export(&mut conn, &registry(), a, &mut writer)
        .await
        .unwrap();
    assert!(writer.meanwhile.is_none(), "the other transaction ran");
    assert_eq!(
        manifest.tables,
        counts(&[("\"customers\"", 3), ("\"orders\"", 3)])
    );
    assert!(
        !String::from_utf8(writer.out)
            .unwrap()
            .contains("\"id\": 99")
    );
    // Committed all the same: a later export has it.
    let later = String::from_utf8(export(&mut conn, a).await).unwrap();
    assert!(later.contains("\"id\": 99"), "{later}");
}
