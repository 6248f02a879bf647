//! The red-team kit against databases with and without holes: each hole is found in the states
//! and statements it opens, a sound table holds everywhere, the fixture rows are gone after.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tenant_db::KeyType;
use tenant_db::redteam::{Op, Report, State, Target, run};
use tenant_db::rls::policy_sql_for;
use tenant_db_tests::{APP_ROLE, OWNER_ROLE};

const DATABASE: &str = "tenant_db_redteam";

async fn app_url() -> String {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    URL.get_or_init(|| async { tenant_db_tests::provision(DATABASE, "", &[]).await.unwrap() })
        .await
        .clone()
}

/// A schema `schema` with a parent and a child tenant table (keyed by `key`), under the
/// generated policies, then `sabotage` (`{s}` is the schema); the app role may use it all.
async fn fixture(schema: &str, key: &str, sabotage: &str) -> Vec<Target> {
    app_url().await;
    let mut owner = AsyncPgConnection::establish(&tenant_db_tests::url_for(OWNER_ROLE, DATABASE))
        .await
        .unwrap();
    let kt = KeyType::from_column_type(key).unwrap();
    let (projects, tasks) = (
        format!("\"{schema}\".\"projects\""),
        format!("\"{schema}\".\"tasks\""),
    );
    owner
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
             CREATE TYPE {schema}.status AS ENUM ('open', 'closed');
             CREATE TABLE {schema}.projects (tenant_id {key} NOT NULL, id bigint NOT NULL,
                 name text NOT NULL, status {schema}.status NOT NULL, created timestamptz NOT NULL,
                 PRIMARY KEY (tenant_id, id));
             CREATE TABLE {schema}.tasks (tenant_id {key} NOT NULL, id bigserial, project_id bigint NOT NULL,
                 done boolean NOT NULL, tags text[] NOT NULL, note text,
                 PRIMARY KEY (tenant_id, id),
                 FOREIGN KEY (tenant_id, project_id) REFERENCES {schema}.projects (tenant_id, id));
             {}{}
             GRANT USAGE ON SCHEMA {schema} TO {APP_ROLE};
             GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {APP_ROLE};
             GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {APP_ROLE};
             {}",
            policy_sql_for(&projects, "tenant_id", kt),
            policy_sql_for(&tasks, "tenant_id", kt),
            sabotage.replace("{s}", schema),
        ))
        .await
        .unwrap();
    vec![
        Target::new(&tasks, "tenant_id"),
        Target::new(&projects, "tenant_id"),
    ]
}

/// The (table, op, state) of every crossing.
fn crossings(report: &Report) -> Vec<(String, Op, State)> {
    report
        .crossings()
        .map(|c| {
            (
                c.table.rsplit('.').next().unwrap().replace('"', ""),
                c.op,
                c.state,
            )
        })
        .collect()
}

async fn rows(schema: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(DATABASE))
        .await
        .unwrap();
    let n: N = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(format!(
            "SELECT (SELECT count(*) FROM {schema}.projects) + (SELECT count(*) FROM {schema}.tasks) AS n"
        )),
        &mut admin,
    )
    .await
    .unwrap();
    n.n
}

#[tokio::test]
async fn generated_policies_hold_for_every_key_kind_and_the_fixtures_are_removed() {
    for (schema, key) in [
        ("rt_sound_uuid", "uuid"),
        ("rt_sound_int", "bigint"),
        ("rt_sound_text", "text"),
    ] {
        let targets = fixture(schema, key, "").await;
        let report = run(&app_url().await, &targets).await.unwrap();
        assert!(report.is_clean(), "{schema}: {report}");
        assert_eq!(report.checks.len(), 2 * 4 * 4);
        assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
        assert_eq!(rows(schema).await, 0, "{schema}");
    }
}

#[tokio::test]
async fn each_hole_is_found_where_it_opens() {
    let url = app_url().await;
    use Op::*;
    use State::*;
    /// A schema, its hole, and the (table, statement, state) the hole must show in.
    type Case = (&'static str, &'static str, Vec<(&'static str, Op, State)>);
    let cases: [Case; 4] = [
        (
            // RLS off on one table: every attempt without the right tenant reaches it.
            "rt_off",
            "ALTER TABLE {s}.tasks DISABLE ROW LEVEL SECURITY;",
            [NoTenant, EmptySetting, OtherTenant, SessionLeak]
                .into_iter()
                .flat_map(|s| {
                    [
                        ("tasks", Select, s),
                        ("tasks", Insert, s),
                        ("tasks", Update, s),
                        ("tasks", Delete, s),
                    ]
                })
                .collect(),
        ),
        (
            // A policy that trusts the forgeable setting: a leaked session value opens it.
            "rt_forgeable",
            "DROP POLICY tenant_db_isolation ON {s}.projects;
             CREATE POLICY forgeable ON {s}.projects AS RESTRICTIVE USING
               (tenant_id = nullif(current_setting('app.current_tenant', true), '')::uuid);",
            vec![
                ("projects", Select, SessionLeak),
                ("projects", Insert, SessionLeak),
                ("projects", Update, SessionLeak),
                ("projects", Delete, SessionLeak),
            ],
        ),
        (
            // Fails open when nothing is set.
            "rt_open",
            "DROP POLICY tenant_db_isolation ON {s}.projects;
             CREATE POLICY open ON {s}.projects AS RESTRICTIVE USING
               (current_setting('app.current_tenant', true) IS NULL
                OR tenant_id = (SELECT tenant_db.current_tenant()::uuid));",
            vec![
                ("projects", Select, NoTenant),
                ("projects", Insert, NoTenant),
                ("projects", Update, NoTenant),
                ("projects", Delete, NoTenant),
            ],
        ),
        (
            // The tenant checked for reads only: inserts cross, and so do updates and deletes
            // that read no column (a WHERE on the tenant column would bring the SELECT policy
            // back in).
            "rt_reads_only",
            "DROP POLICY tenant_db_isolation ON {s}.tasks;
             CREATE POLICY reads ON {s}.tasks AS RESTRICTIVE FOR SELECT
               USING (tenant_id = (SELECT tenant_db.current_tenant()::uuid));",
            [NoTenant, EmptySetting, OtherTenant, SessionLeak]
                .into_iter()
                .flat_map(|s| [("tasks", Insert, s), ("tasks", Update, s)])
                .chain([NoTenant, EmptySetting, SessionLeak].map(|s| ("tasks", Delete, s)))
                .collect(),
        ),
    ];
    for (schema, sabotage, expected) in cases {
        let targets = fixture(schema, "uuid", sabotage).await;
        let report = run(&url, &targets).await.unwrap();
        let mut expected: Vec<(String, Op, State)> = expected
            .into_iter()
            .map(|(t, o, s)| (t.to_string(), o, s))
            .collect();
        let mut found = crossings(&report);
        let key = |c: &(String, Op, State)| format!("{c:?}");
        expected.sort_by_key(key);
        found.sort_by_key(key);
        assert_eq!(found, expected, "{schema}: {report}");
        assert!(!report.incomplete(), "{schema}: {report}");
    }
}

/// The CLI's exit code, and everything it printed.
fn cli(args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = common::run(args);
    (code, stdout + &stderr)
}

#[tokio::test]
async fn the_command_exits_like_the_doctor() {
    let url = app_url().await;
    fixture("rt_cli_sound", "uuid", "").await;
    fixture(
        "rt_cli_hole",
        "uuid",
        "ALTER TABLE {s}.tasks DISABLE ROW LEVEL SECURITY;",
    )
    .await;
    // A table no plain row satisfies: it cannot be seeded, so nothing is proven.
    fixture(
        "rt_cli_unseedable",
        "uuid",
        "ALTER TABLE {s}.projects ADD CHECK (id > 100);",
    )
    .await;
    let args = |schema: &str| {
        vec![
            "redteam".to_string(),
            "--database-url".to_string(),
            url.clone(),
            "--table".to_string(),
            format!("{schema}.projects"),
            "--table".to_string(),
            format!("{schema}.tasks:tenant_id"),
        ]
    };
    let run = |schema: &str| {
        let a = args(schema);
        cli(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let (code, out) = run("rt_cli_sound");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("32 of 32 attempts held"), "{out}");
    let (code, out) = run("rt_cli_hole");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("CROSSED \"rt_cli_hole\".\"tasks\" Select NoTenant"),
        "{out}"
    );
    let (code, out) = run("rt_cli_unseedable");
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot seed it"), "{out}");
    assert_eq!(cli(&["redteam", "--database-url", &url]).0, 2);
    assert_eq!(
        cli(&["redteam", "--database-url", &url, "--table", "a.b.c"]).0,
        2
    );
}

#[tokio::test]
async fn holes_only_a_statement_without_where_or_one_tenant_order_opens_are_found() {
    let url = app_url().await;
    let iso = "tenant_id = (SELECT tenant_db.current_tenant()::uuid)";
    // No DELETE policy: `DELETE … WHERE tenant_id = …` reads the column, so the SELECT policy
    // hides the victim; a `DELETE` without WHERE does not.
    let targets = fixture(
        "rt_no_delete",
        "uuid",
        &format!(
            "DROP POLICY tenant_db_isolation ON {{s}}.tasks;
             CREATE POLICY sel ON {{s}}.tasks AS RESTRICTIVE FOR SELECT USING ({iso});
             CREATE POLICY ins ON {{s}}.tasks AS RESTRICTIVE FOR INSERT WITH CHECK ({iso});
             CREATE POLICY upd ON {{s}}.tasks AS RESTRICTIVE FOR UPDATE USING ({iso}) WITH CHECK ({iso});"
        ),
    )
    .await;
    let report = run(&url, &targets).await.unwrap();
    let found = crossings(&report);
    for state in [State::NoTenant, State::EmptySetting, State::SessionLeak] {
        assert!(
            found.contains(&("tasks".to_string(), Op::Delete, state)),
            "{report}"
        );
    }
    assert!(
        found
            .iter()
            .all(|(t, op, _)| t == "tasks" && *op == Op::Delete),
        "{report}"
    );
    // A policy that lets a tenant see the tenants below it: found whichever fixture tenant
    // draws the larger id, every run.
    for _ in 0..3 {
        let targets = fixture(
            "rt_order",
            "bigint",
            "DROP POLICY tenant_db_isolation ON {s}.projects;
             CREATE POLICY below ON {s}.projects AS RESTRICTIVE
               USING (tenant_id <= (SELECT tenant_db.current_tenant('int')::bigint))
               WITH CHECK (tenant_id = (SELECT tenant_db.current_tenant('int')::bigint));",
        )
        .await;
        let report = run(&url, &targets).await.unwrap();
        assert!(
            crossings(&report).contains(&("projects".to_string(), Op::Select, State::OtherTenant)),
            "{report}"
        );
    }
}

#[tokio::test]
async fn fixture_rows_that_stay_are_reported_and_a_half_seeded_table_is_cleaned() {
    let url = app_url().await;
    // Rows nobody may delete: the report says so, and is not clean.
    let targets = fixture(
        "rt_append_only",
        "uuid",
        "CREATE POLICY keep ON {s}.tasks AS RESTRICTIVE FOR DELETE USING (false);",
    )
    .await;
    let report = run(&url, &targets).await.unwrap();
    assert_eq!(report.crossings().count(), 0, "{report}");
    assert!(
        report
            .leftovers
            .iter()
            .filter(|l| l.starts_with(r#""rt_append_only"."tasks""#))
            .count()
            == 2,
        "{report}"
    );
    assert!(!report.is_clean() && report.incomplete());
    assert!(report.to_string().contains("left behind"), "{report}");
    // The second tenant's row collides with the first's on a key without the tenant: the
    // table is not attacked, and the first tenant's row does not stay.
    let targets = fixture(
        "rt_half_seeded",
        "uuid",
        "CREATE UNIQUE INDEX ON {s}.projects (name);",
    )
    .await;
    let report = run(&url, &targets).await.unwrap();
    assert!(report.incomplete(), "{report}");
    assert!(report.leftovers.is_empty(), "{report}");
    assert_eq!(rows("rt_half_seeded").await, 0);
}

#[tokio::test]
async fn a_table_the_application_cannot_read_holds_and_its_fixture_rows_are_reported() {
    let url = app_url().await;
    // Writes granted, reads not: every attempt is refused, and the fixture rows cannot be
    // found again to be removed.
    let targets = fixture(
        "rt_write_only",
        "uuid",
        &format!("REVOKE SELECT ON {{s}}.tasks FROM {APP_ROLE};"),
    )
    .await;
    let report = run(&url, &targets).await.unwrap();
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.outcome == tenant_db::redteam::Outcome::Held),
        "{report}"
    );
    assert!(!report.leftovers.is_empty(), "{report}");
}
