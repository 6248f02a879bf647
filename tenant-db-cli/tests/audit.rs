//! `tenant-db audit` lists what admin transactions recorded.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
use std::time::Duration;
use tenant_db::admin::{AdminGrant, Reason};
use tenant_db::{Error, TenantDb, TenantId};
use tenant_db_tests::schema::{DATABASE, TENANT_TABLES, schema_sql};

fn cli(args: &[&str]) -> (i32, String, String) {
    common::run(args)
}

#[tokio::test]
async fn audit_lists_the_rows_of_an_admin_transaction() {
    let url = tenant_db_tests::provision(DATABASE, &schema_sql(), TENANT_TABLES)
        .await
        .unwrap();
    let db = TenantDb::connect(&url, 1).unwrap();
    let actor = format!("cli-{}", uuid::Uuid::new_v4().simple());
    let tenant = TenantId::new_random();
    let grant = AdminGrant::for_tenant(
        &actor,
        Reason::text("customer asked to export their data").unwrap(),
        tenant,
        Duration::from_secs(60),
    )
    .unwrap();
    db.admin_transaction(&grant, async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap();

    let (code, stdout, _) = cli(&["audit", "--database-url", &url, "--json", "--limit", "1000"]);
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mine: Vec<&serde_json::Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == actor.as_str())
        .collect();
    assert_eq!(mine.len(), 3, "{stdout}");
    // Newest first.
    assert_eq!(mine[0]["event"], "closed");
    assert_eq!(mine[0]["outcome"], "ok");
    assert_eq!(mine[1]["event"], "opened");
    assert_eq!(mine[2]["event"], "granted");
    assert_eq!(mine[2]["tenant"], tenant.to_string());
    assert_eq!(mine[2]["reason"], "customer asked to export their data");

    let (code, stdout, _) = cli(&["audit", "--database-url", &url, "--limit", "1000"]);
    assert_eq!(code, 0);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains(&actor) && l.contains("closed") && l.contains("outcome ok")),
        "{stdout}"
    );

    // A database without the audit table: exit 2, and why.
    let (code, _, stderr) = cli(&[
        "audit",
        "--database-url",
        &tenant_db_tests::admin_url_for("postgres"),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("admin_audit"), "{stderr}");
}
