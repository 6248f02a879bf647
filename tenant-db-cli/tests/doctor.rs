//! `doctor` on real databases: each rule against a schema with exactly that mistake, a clean
//! schema, the example's database, and the CLI's exit statuses.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::process::Command;
use tenant_db::KeyType;
use tenant_db::doctor::{DoctorConfig, Report, Rule, audit_url};
use tenant_db::rls::policy_sql_for;
use tenant_db_tests::{APP_ROLE, NO_RLS_ROLE, OWNER_ROLE};

const DATABASE: &str = "tenant_db_doctor";

/// Provisions the roles and the database once per binary; returns the app role's URL.
async fn app_url() -> String {
    static URL: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    URL.get_or_init(|| async { tenant_db_tests::provision(DATABASE, "", &[]).await.unwrap() })
        .await
        .clone()
}

/// Creates schema `schema` as the owner with a correct set-up: a global table, two tenant
/// tables with composite keys and a composite foreign key, RLS and grants; then runs `mistake`
/// (as the superuser, `{s}` replaced by the schema) and audits the schema.
async fn audit_with(schema: &str, mistake: &str, config: DoctorConfig) -> Report {
    let url = app_url().await;
    let s = format!("\"{schema}\"");
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(DATABASE))
        .await
        .unwrap();
    let setup = format!(
        "DROP SCHEMA IF EXISTS {s} CASCADE;
         SET ROLE {OWNER_ROLE};
         CREATE SCHEMA {s};
         CREATE TABLE {s}.countries (code text PRIMARY KEY);
         CREATE TABLE {s}.projects (tenant_id uuid NOT NULL, id bigint NOT NULL, name text NOT NULL,
             PRIMARY KEY (tenant_id, id), UNIQUE (tenant_id, name));
         CREATE TABLE {s}.tasks (tenant_id uuid NOT NULL, id bigint NOT NULL,
             project_id bigint NOT NULL, country text REFERENCES {s}.countries (code),
             PRIMARY KEY (tenant_id, id),
             FOREIGN KEY (tenant_id, project_id) REFERENCES {s}.projects (tenant_id, id));
         {}{}{}
         RESET ROLE;
         {}",
        policy_sql_for(&format!("{s}.projects"), "tenant_id", KeyType::Uuid),
        policy_sql_for(&format!("{s}.tasks"), "tenant_id", KeyType::Uuid),
        tenant_db::roles::grants_sql(OWNER_ROLE, APP_ROLE, schema),
        mistake.replace("{s}", &s),
    );
    admin.batch_execute(&setup).await.unwrap();
    let config = DoctorConfig {
        schemas: vec![schema.to_string()],
        ..config
    };
    audit_url(&url, &config).await.unwrap()
}

/// The (rule, table) pairs found.
fn found(report: &Report) -> Vec<(Rule, String)> {
    report
        .findings
        .iter()
        .map(|f| (f.rule, f.table.clone()))
        .collect()
}

fn t(schema: &str, table: &str) -> String {
    format!("\"{schema}\".\"{table}\"")
}

/// Audits `schema` with `mistake` and expects exactly `rule` on the tasks table.
async fn expect_on_tasks(schema: &str, mistake: &str, rule: Rule) {
    let report = audit_with(schema, mistake, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(rule, t(schema, "tasks"))],
        "{report:#?}"
    );
    assert!(!report.findings[0].fix.is_empty());
}

#[tokio::test]
async fn a_correct_set_up_has_no_findings() {
    let report = audit_with("doc_clean", "", DoctorConfig::default()).await;
    assert_eq!(found(&report), vec![]);
    assert_eq!(report.app_role, APP_ROLE);
    let tables: Vec<&str> = report
        .tenant_tables
        .iter()
        .map(|(t, _)| t.as_str())
        .collect();
    assert_eq!(
        tables,
        vec![t("doc_clean", "projects"), t("doc_clean", "tasks")]
    );
}

#[tokio::test]
async fn rls_disabled() {
    let m = "ALTER TABLE {s}.tasks DISABLE ROW LEVEL SECURITY;";
    expect_on_tasks("doc_rls_disabled", m, Rule::RlsDisabled).await;
}

#[tokio::test]
async fn rls_not_forced() {
    let m = "ALTER TABLE {s}.tasks NO FORCE ROW LEVEL SECURITY;";
    expect_on_tasks("doc_rls_not_forced", m, Rule::RlsNotForced).await;
}

#[tokio::test]
async fn a_superuser_owner_is_found_and_forcing_is_not_offered_as_the_fix() {
    // Forced or not, a superuser owner ignores the policies.
    let m = "ALTER TABLE {s}.tasks OWNER TO postgres;";
    expect_on_tasks("doc_owner_bypasses", m, Rule::OwnerBypassesRls).await;
    let report = audit_with("doc_owner_bypasses", m, DoctorConfig::default()).await;
    assert!(report.findings[0].fix.contains("OWNER TO"), "{report:#?}");
    assert!(!report.findings[0].fix.contains("FORCE"), "{report:#?}");
}

#[tokio::test]
async fn no_restrictive_policy() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;";
    expect_on_tasks("doc_no_restrictive", m, Rule::NoRestrictivePolicy).await;
}

#[tokio::test]
async fn restrictive_policy_for_one_command_only() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;
             CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR SELECT
               USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid));";
    expect_on_tasks("doc_restrictive_select", m, Rule::NoRestrictivePolicy).await;
}

#[tokio::test]
async fn tenant_condition_only_in_a_permissive_policy() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks; DROP POLICY tenant_db_access ON {s}.tasks;
             CREATE POLICY by_tenant ON {s}.tasks AS PERMISSIVE FOR ALL
               USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid));";
    expect_on_tasks("doc_permissive", m, Rule::TenantPolicyPermissive).await;
}

#[tokio::test]
async fn policy_that_fails_open() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;
             CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
               USING (current_setting('app.current_tenant', true) IS NULL
                      OR tenant_id = (SELECT current_setting('app.current_tenant', true)::uuid));";
    expect_on_tasks("doc_fails_open", m, Rule::PolicyFailsOpen).await;
}

#[tokio::test]
async fn policy_evaluated_per_row() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;
             CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
               USING (tenant_id = NULLIF(current_setting('app.current_tenant', true), '')::uuid);";
    expect_on_tasks("doc_per_row", m, Rule::PolicyPerRow).await;
}

#[tokio::test]
async fn no_index_leads_with_the_tenant_column() {
    let schema = "doc_no_index";
    let m = format!(
        "SET ROLE {OWNER_ROLE};
         CREATE TABLE {{s}}.events (tenant_id uuid NOT NULL, body text);
         {} RESET ROLE;",
        policy_sql_for(&format!("\"{schema}\".events"), "tenant_id", KeyType::Uuid)
    );
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::NoTenantIndex, t(schema, "events"))]
    );
}

#[tokio::test]
async fn unique_key_without_the_tenant_column() {
    let schema = "doc_unique";
    let m = "CREATE UNIQUE INDEX projects_name ON {s}.projects (name);";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::UniqueWithoutTenant, t(schema, "projects"))]
    );
}

#[tokio::test]
async fn foreign_key_that_does_not_pair_the_tenant_columns() {
    let m = "ALTER TABLE {s}.tasks ADD COLUMN other_tenant uuid;
             ALTER TABLE {s}.tasks ADD FOREIGN KEY (other_tenant, project_id)
               REFERENCES {s}.projects (tenant_id, id);";
    expect_on_tasks("doc_fk", m, Rule::ForeignKeyWithoutTenant).await;
}

#[tokio::test]
async fn app_role_superuser() {
    let config = DoctorConfig {
        app_role: Some("postgres".into()),
        ..DoctorConfig::default()
    };
    let report = audit_with("doc_superuser", "", config).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleSuperuser, String::new())]
    );
}

#[tokio::test]
async fn app_role_bypassrls() {
    let config = DoctorConfig {
        app_role: Some(NO_RLS_ROLE.into()),
        ..DoctorConfig::default()
    };
    let grants = tenant_db::roles::grants_sql(OWNER_ROLE, NO_RLS_ROLE, "doc_bypass");
    let report = audit_with("doc_bypass", &grants, config).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleBypassRls, String::new())]
    );
}

#[tokio::test]
async fn app_role_owns_a_tenant_table() {
    let m = format!("ALTER TABLE {{s}}.tasks OWNER TO {APP_ROLE};");
    expect_on_tasks("doc_owner", &m, Rule::AppRoleOwnsTable).await;
}

#[tokio::test]
async fn app_role_holds_truncate() {
    let m = format!("GRANT TRUNCATE, TRIGGER ON {{s}}.tasks TO {APP_ROLE};");
    let report = audit_with("doc_truncate", &m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRolePrivilege, t("doc_truncate", "tasks"))]
    );
    assert!(
        report.findings[0]
            .fix
            .starts_with("REVOKE TRUNCATE, TRIGGER ON")
    );
}

#[tokio::test]
async fn view_without_security_invoker() {
    let schema = "doc_view";
    let m = "CREATE VIEW {s}.all_tasks AS SELECT id FROM {s}.tasks;
             CREATE VIEW {s}.safe_tasks WITH (security_invoker = true) AS SELECT id FROM {s}.tasks;";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(
            Rule::ViewWithoutSecurityInvoker,
            format!("{schema}.all_tasks")
        )]
    );
}

#[tokio::test]
async fn security_definer_function_reading_a_tenant_table() {
    let m = "CREATE FUNCTION {s}.count_tasks() RETURNS bigint LANGUAGE sql SECURITY DEFINER
               AS 'SELECT count(*) FROM {s}.tasks';
             CREATE FUNCTION {s}.harmless() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';";
    expect_on_tasks("doc_definer", m, Rule::SecurityDefinerReadsTenantTable).await;
}

#[tokio::test]
async fn partition_without_its_own_policy() {
    let schema = "doc_partition";
    let logs = format!("\"{schema}\".logs");
    let m = format!(
        "SET ROLE {OWNER_ROLE};
         CREATE TABLE {logs} (tenant_id uuid NOT NULL, id bigint NOT NULL, PRIMARY KEY (tenant_id, id))
             PARTITION BY HASH (tenant_id);
         CREATE TABLE {logs}_0 PARTITION OF {logs} FOR VALUES WITH (MODULUS 2, REMAINDER 0);
         CREATE TABLE {logs}_1 PARTITION OF {logs} FOR VALUES WITH (MODULUS 2, REMAINDER 1);
         {}{}
         RESET ROLE;",
        policy_sql_for(&logs, "tenant_id", KeyType::Uuid),
        policy_sql_for(&format!("{logs}_0"), "tenant_id", KeyType::Uuid),
    );
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::PartitionWithoutPolicy, t(schema, "logs_1"))]
    );
}

#[tokio::test]
async fn registered_table_missing_and_discovery_by_another_column_name() {
    let schema = "doc_registered";
    let m = "CREATE TABLE {s}.accounts (org_id uuid NOT NULL, id bigint NOT NULL,
                 PRIMARY KEY (org_id, id));
             ALTER TABLE {s}.accounts ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {s}.accounts OWNER TO tenant_db_owner;";
    let config = DoctorConfig {
        tenant_columns: vec!["tenant_id".into(), "org_id".into()],
        registered: vec![(schema.into(), "ghost".into(), "tenant_id".into())],
        ..DoctorConfig::default()
    };
    let report = audit_with(schema, m, config).await;
    let accounts = t(schema, "accounts");
    assert_eq!(
        found(&report),
        vec![
            (Rule::RlsNotForced, accounts.clone()),
            (Rule::NoRestrictivePolicy, accounts.clone()),
            (Rule::RegisteredTableMissing, t(schema, "ghost")),
        ]
    );
    assert!(report.tenant_tables.contains(&(accounts, "org_id".into())));
}

diesel::table! {
    doc_register.accounts (org_id, id) {
        org_id -> Uuid,
        id -> BigInt,
    }
}

/// A tenant table whose tenant column discovery would not find.
#[derive(diesel::Queryable, tenant_db::TenantTable)]
#[diesel(table_name = accounts)]
#[tenant(column = org_id)]
#[allow(dead_code)]
struct Account {
    org_id: uuid::Uuid,
    id: i64,
}

#[tokio::test]
async fn tables_registered_from_code_are_audited_with_their_column() {
    let schema = "doc_register";
    let accounts = t(schema, "accounts");
    let m = format!(
        "CREATE TABLE {{s}}.accounts (org_id uuid NOT NULL, id bigint NOT NULL,
             PRIMARY KEY (org_id, id));
         {}
         ALTER TABLE {{s}}.accounts NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE {{s}}.accounts OWNER TO {OWNER_ROLE};",
        policy_sql_for(&accounts, "org_id", KeyType::Uuid)
    );
    // Discovery looks for `tenant_id` only; registration names `org_id`.
    let config = DoctorConfig::default()
        .register::<accounts::table>()
        .unwrap();
    assert_eq!(
        config.registered,
        vec![(schema.into(), "accounts".into(), "org_id".into())]
    );
    let report = audit_with(schema, &m, config).await;
    assert!(
        report
            .tenant_tables
            .contains(&(accounts.clone(), "org_id".into()))
    );
    assert_eq!(found(&report), vec![(Rule::RlsNotForced, accounts)]);
}

#[tokio::test]
async fn tables_keyed_by_bigint_integer_text_and_varchar_pass_with_their_own_policy() {
    let schema = "doc_keys";
    let mut m = String::new();
    for (table, ty, key) in [
        ("ledgers", "bigint", KeyType::BigInt),
        ("seats", "integer", KeyType::Integer),
        ("workspaces", "text", KeyType::Text),
        ("boards", "varchar(64)", KeyType::Text),
    ] {
        let name = t(schema, table);
        m.push_str(&format!(
            "CREATE TABLE {name} (tenant_id {ty} NOT NULL, id bigint NOT NULL,
                 PRIMARY KEY (tenant_id, id));
             ALTER TABLE {name} OWNER TO {OWNER_ROLE};
             {}",
            policy_sql_for(&name, "tenant_id", key)
        ));
    }
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    assert_eq!(report.tenant_tables.len(), 6, "{report:#?}");
    assert_eq!(found(&report), vec![], "{report:#?}");
}

#[tokio::test]
async fn a_policy_of_another_key_kind_or_a_column_of_no_key_type_is_found() {
    let schema = "doc_key_mistakes";
    let ledgers = t(schema, "ledgers");
    let codes = t(schema, "codes");
    let loose = t(schema, "loose");
    let m = format!(
        "CREATE TABLE {ledgers} (tenant_id bigint NOT NULL, id bigint NOT NULL,
             PRIMARY KEY (tenant_id, id));
         {}
         CREATE TABLE {codes} (tenant_id char(8) NOT NULL, id bigint NOT NULL,
             PRIMARY KEY (tenant_id, id));
         {}
         CREATE TABLE {loose} (tenant_id uuid, id bigint NOT NULL, UNIQUE (tenant_id, id));
         {}
         ALTER TABLE {ledgers} OWNER TO {OWNER_ROLE};
         ALTER TABLE {codes} OWNER TO {OWNER_ROLE};
         ALTER TABLE {loose} OWNER TO {OWNER_ROLE};",
        // A bigint column compared with the text kind's tenant: never set for an integer
        // tenant, so not a tenant condition.
        policy_sql_for(&ledgers, "tenant_id", KeyType::BigInt).replace(
            "current_tenant('int')::bigint",
            "current_tenant('text')::bigint"
        ),
        policy_sql_for(&codes, "tenant_id", KeyType::Text),
        policy_sql_for(&loose, "tenant_id", KeyType::Uuid),
    );
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    let mut got = found(&report);
    got.sort();
    let mut expected = vec![
        (Rule::NoRestrictivePolicy, ledgers.clone()),
        (Rule::TenantColumnType, codes.clone()),
        (Rule::TenantColumnType, loose.clone()),
    ];
    expected.sort();
    assert_eq!(got, expected, "{report:#?}");
    // The fix for the ledgers policy uses the bigint expression.
    let fix = &report
        .findings
        .iter()
        .find(|f| f.table == ledgers)
        .unwrap()
        .fix;
    assert!(fix.contains("current_tenant('int')::bigint"), "{fix}");
    let detail: Vec<&str> = report
        .findings
        .iter()
        .filter(|f| f.rule == Rule::TenantColumnType)
        .map(|f| f.detail.as_str())
        .collect();
    assert!(
        detail.iter().any(|d| d.contains("`character(8)`")),
        "{detail:?}"
    );
    assert!(
        detail.iter().any(|d| d.contains("allows NULL")),
        "{detail:?}"
    );
}

#[tokio::test]
async fn membership_in_a_superuser_bypassrls_or_owner_role_is_found_with_its_chain() {
    // Roles of their own, so that the shared application role stays clean for other tests.
    let roles = "DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_admin') THEN
            CREATE ROLE doc_admin NOLOGIN SUPERUSER; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_ops') THEN
            CREATE ROLE doc_ops NOLOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_reporting') THEN
            CREATE ROLE doc_reporting NOLOGIN BYPASSRLS; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_su_app') THEN
            CREATE ROLE doc_su_app NOLOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_bypass_app') THEN
            CREATE ROLE doc_bypass_app NOLOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_owner_app') THEN
            CREATE ROLE doc_owner_app NOLOGIN; END IF;
        END $$;
        GRANT doc_admin TO doc_ops;
        GRANT doc_ops TO doc_su_app;
        GRANT doc_reporting TO doc_bypass_app;";
    let cases = [
        (
            "doc_su_app",
            "",
            Rule::AppRoleSuperuser,
            "doc_su_app → doc_ops → doc_admin",
            "doc_ops",
        ),
        (
            "doc_bypass_app",
            "",
            Rule::AppRoleBypassRls,
            "doc_bypass_app → doc_reporting",
            "doc_reporting",
        ),
    ];
    for (app, table, rule, chain, first) in cases {
        let config = DoctorConfig {
            app_role: Some(app.into()),
            ..DoctorConfig::default()
        };
        let report = audit_with("doc_membership", roles, config.clone()).await;
        assert_eq!(
            found(&report),
            vec![(rule, table.to_string())],
            "{report:#?}"
        );
        assert!(report.findings[0].detail.contains(chain), "{report:#?}");
        assert_eq!(
            report.findings[0].fix,
            format!("REVOKE \"{first}\" FROM \"{app}\";")
        );
    }
    // A member of the tables' owner: found on each tenant table; the fix converges.
    let config = DoctorConfig {
        app_role: Some("doc_owner_app".into()),
        ..DoctorConfig::default()
    };
    let grant = format!("{roles} GRANT {OWNER_ROLE} TO doc_owner_app;");
    let report = audit_with("doc_membership", &grant, config.clone()).await;
    assert_eq!(
        found(&report),
        vec![
            (Rule::AppRoleOwnsTable, t("doc_membership", "projects")),
            (Rule::AppRoleOwnsTable, t("doc_membership", "tasks")),
        ],
        "{report:#?}"
    );
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(DATABASE))
        .await
        .unwrap();
    admin.batch_execute(&report.findings[0].fix).await.unwrap();
    let config = DoctorConfig {
        schemas: vec!["doc_membership".into()],
        ..config
    };
    let again = audit_url(&app_url().await, &config).await.unwrap();
    assert_eq!(found(&again), vec![], "{again:#?}");
}

/// Runs the CLI; returns its exit code and standard output.
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenant-db"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn cli_passes_the_examples_database() {
    // The database the quickstart example uses, set up exactly as the example does.
    let url = tenant_db_tests::provision(
        "tenant_db_quickstart",
        &tenant_db_tests::schema::schema_sql(),
        tenant_db_tests::schema::TENANT_TABLES,
    )
    .await
    .unwrap();
    let (code, stdout) = cli(&["doctor", "--database-url", &url]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("no findings"), "{stdout}");
    assert!(
        stdout.contains("\"public\".\"customers\" (tenant_id)"),
        "{stdout}"
    );
}

#[tokio::test]
async fn cli_exits_1_with_findings_and_json_lists_them() {
    let schema = "doc_cli";
    audit_with(
        schema,
        "ALTER TABLE {s}.tasks NO FORCE ROW LEVEL SECURITY;",
        DoctorConfig::default(),
    )
    .await;
    let url = app_url().await;
    let (code, stdout) = cli(&[
        "doctor",
        "--database-url",
        &url,
        "--schema",
        schema,
        "--json",
    ]);
    assert_eq!(code, 1, "{stdout}");
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["clean"], false);
    assert_eq!(doc["findings"][0]["rule"], "rls-not-forced");
    assert_eq!(doc["findings"][0]["table"], t(schema, "tasks"));
    assert!(
        doc["findings"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("FORCE ROW LEVEL SECURITY")
    );
    assert_eq!(doc["findings"].as_array().unwrap().len(), 1);

    let (code, table) = cli(&["doctor", "--database-url", &url, "--schema", schema]);
    assert_eq!(code, 1);
    assert!(
        table.contains("rls-not-forced") && table.contains("1 finding(s)"),
        "{table}"
    );
}

#[tokio::test]
async fn cli_exits_2_when_it_cannot_connect_or_the_input_is_bad() {
    let url = app_url().await;
    // Nothing listens on port 1.
    assert_eq!(
        cli(&["doctor", "--database-url", "postgres://x@127.0.0.1:1/x"]).0,
        2
    );
    assert_eq!(cli(&["doctor", "--database-url", "not a url"]).0, 2);
    assert_eq!(
        cli(&[
            "doctor",
            "--database-url",
            &url,
            "--app-role",
            "no_such_role"
        ])
        .0,
        2
    );
    assert_eq!(cli(&["doctor"]).0, 2, "no URL at all");
    // A gate that audited nothing does not pass: a schema that does not exist, or one without
    // a tenant table, or a tenant column no table has.
    let (code, _) = cli(&[
        "doctor",
        "--database-url",
        &url,
        "--schema",
        "no_such_schema",
    ]);
    assert_eq!(code, 2, "missing schema");
    let (code, _) = cli(&["doctor", "--database-url", &url, "--schema", "pg_catalog"]);
    assert_eq!(code, 2, "no tenant table");
    let (code, _) = cli(&[
        "doctor",
        "--database-url",
        &url,
        "--tenant-column",
        "no_such_column",
    ]);
    assert_eq!(code, 2, "no table has the column");
    assert_eq!(cli(&["doctor", "--database-url", &url, "--bogus"]).0, 2);
    assert_eq!(cli(&[]).0, 2, "no subcommand");
}
