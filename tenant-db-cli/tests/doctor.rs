//! `doctor` on real databases: each rule against a schema with exactly that mistake and its
//! sound control, each fix applied and the audit run again, the probe leaving the data as it
//! was, and the CLI's exit statuses and output.

#![allow(clippy::unwrap_used, missing_docs)]

mod common;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::process::Command;
use tenant_db::KeyType;
use tenant_db::doctor::{DoctorConfig, Report, Rule, audit_url};
use tenant_db::rls::policy_sql_for;
use tenant_db_tests::{APP_ROLE, OWNER_ROLE};

const DATABASE: &str = "tenant_db_doctor";

/// Two tenants with rows in every fixture.
const TENANT_A: &str = "00000000-0000-4000-8000-00000000000a";
const TENANT_B: &str = "00000000-0000-4000-8000-00000000000b";

/// Provisions the roles and `database` once per database; returns the app role's URL.
async fn app_url_for(database: &'static str) -> String {
    static URLS: tokio::sync::Mutex<Vec<(&'static str, String)>> =
        tokio::sync::Mutex::const_new(Vec::new());
    let mut urls = URLS.lock().await;
    if let Some((_, url)) = urls.iter().find(|(d, _)| *d == database) {
        return url.clone();
    }
    let url = tenant_db_tests::provision(database, "", &[]).await.unwrap();
    urls.push((database, url.clone()));
    url
}

async fn app_url() -> String {
    app_url_for(DATABASE).await
}

async fn admin(database: &str) -> AsyncPgConnection {
    AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(database))
        .await
        .unwrap()
}

/// Creates schema `schema` in `database` as the owner with a correct set-up: a global table,
/// two tenant tables with composite keys and a composite foreign key, RLS, grants (reads
/// everywhere, writes on the tenant tables) and rows of two tenants; then runs `mistake` (as
/// the superuser, `{s}` replaced by the schema).
async fn set_up_in(database: &'static str, schema: &str, mistake: &str) {
    app_url_for(database).await;
    let s = format!("\"{schema}\"");
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
         {}{}{}{}{}
         RESET ROLE;
         INSERT INTO {s}.countries VALUES ('FR');
         INSERT INTO {s}.projects VALUES ('{TENANT_A}', 1, 'a'), ('{TENANT_B}', 1, 'b');
         INSERT INTO {s}.tasks VALUES ('{TENANT_A}', 1, 1, 'FR'), ('{TENANT_B}', 1, 1, NULL);
         {}",
        policy_sql_for(&format!("{s}.projects"), "tenant_id", KeyType::Uuid),
        policy_sql_for(&format!("{s}.tasks"), "tenant_id", KeyType::Uuid),
        tenant_db::roles::grants_sql(OWNER_ROLE, APP_ROLE, schema).unwrap(),
        tenant_db::roles::tenant_table_write_sql_for(APP_ROLE, &format!("{s}.projects")).unwrap(),
        tenant_db::roles::tenant_table_write_sql_for(APP_ROLE, &format!("{s}.tasks")).unwrap(),
        mistake.replace("{s}", &s),
    );
    admin(database).await.batch_execute(&setup).await.unwrap();
}

/// The configuration the fixtures audit with: `schema`, `countries` declared global.
fn config_for(schema: &str, config: DoctorConfig) -> DoctorConfig {
    let global_tables = if config.global_tables.is_empty() {
        vec!["countries".into()]
    } else {
        config.global_tables.clone()
    };
    DoctorConfig {
        schemas: vec![schema.to_string()],
        global_tables,
        ..config
    }
}

/// Audits `schema` of `database`: as the application role, or, when the configuration names
/// another application role, as the superuser acting for it.
async fn audit_in(database: &'static str, schema: &str, config: &DoctorConfig) -> Report {
    let url = match config.app_role {
        Some(_) => tenant_db_tests::admin_url_for(database),
        None => app_url_for(database).await,
    };
    audit_url(&url, &config_for(schema, config.clone()))
        .await
        .unwrap()
}

/// Sets up `schema` with `mistake` and audits it.
async fn audit_with(schema: &str, mistake: &str, config: DoctorConfig) -> Report {
    set_up_in(DATABASE, schema, mistake).await;
    audit_in(DATABASE, schema, &config).await
}

/// Applies every fix of `report` (as the superuser) and audits again: nothing may be left.
async fn fixes_converge(
    database: &'static str,
    schema: &str,
    report: &Report,
    config: DoctorConfig,
) {
    let script = report.fix_script();
    assert!(!script.is_empty(), "{report:#?}");
    for fix in &report.fixes {
        assert!(
            fix.sql.starts_with("BEGIN;") && fix.sql.trim_end().ends_with("COMMIT;"),
            "{}",
            fix.sql
        );
    }
    admin(database)
        .await
        .batch_execute(&script)
        .await
        .unwrap_or_else(|e| panic!("the fix failed: {e}\n{script}"));
    let again = audit_in(database, schema, &config).await;
    assert_eq!(
        found(&again),
        vec![],
        "after the fixes:\n{script}\n{again:#?}"
    );
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

/// Audits `schema` with `mistake`, expects exactly `rule` on the tasks table, and checks that
/// the fix converges.
async fn expect_on_tasks(schema: &str, mistake: &str, rule: Rule) -> Report {
    let report = audit_with(schema, mistake, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(rule, t(schema, "tasks"))],
        "{report:#?}"
    );
    assert!(!report.findings[0].fix.is_empty());
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
    report
}

/// Audits `schema` with `mistake` and expects no finding.
async fn expect_clean(schema: &str, mistake: &str) {
    let report = audit_with(schema, mistake, DoctorConfig::default()).await;
    assert_eq!(found(&report), vec![], "{report:#?}");
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
    // The probe ran on both tables, reads and writes, and had nothing to skip.
    assert_eq!(report.notes, Vec::<String>::new());
    assert!(report.fixes.is_empty());
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
    let report = expect_on_tasks("doc_owner_bypasses", m, Rule::OwnerBypassesRls).await;
    // The owner tenant-db's migrations run as, which FORCE binds.
    assert!(
        report.findings[0]
            .fix
            .contains(&format!("OWNER TO \"{OWNER_ROLE}\"")),
        "{report:#?}"
    );
    assert!(!report.findings[0].fix.contains("FORCE"), "{report:#?}");
}

#[tokio::test]
async fn no_restrictive_policy() {
    // Only `USING (true)` is left: the probe sees every row, the text says why.
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;";
    let report = expect_on_tasks("doc_no_restrictive", m, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("with the tenant unset, the application role sees 2 row(s) (no restrictive policy applies; permissive `tenant_db_access` lets it through)"),
        "{detail}"
    );
    assert!(detail.contains("no restrictive policy"), "{detail}");
}

#[tokio::test]
async fn no_restrictive_policy_on_an_empty_table_is_found_by_the_made_up_row() {
    let m = "DELETE FROM {s}.tasks; DROP POLICY tenant_db_isolation ON {s}.tasks;";
    let report = expect_on_tasks("doc_no_restrictive_empty", m, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("a row of another tenant passes the read policies (no restrictive policy applies; permissive `tenant_db_access` lets it through)"),
        "{detail}"
    );
    // Not forced, the policies still bind the app role (it does not own the table).
    let m = format!("{m} ALTER TABLE {{s}}.tasks NO FORCE ROW LEVEL SECURITY;");
    let report = audit_with("doc_no_restrictive_unforced", &m, DoctorConfig::default()).await;
    let tasks = t("doc_no_restrictive_unforced", "tasks");
    assert_eq!(
        found(&report),
        vec![
            (Rule::RlsNotForced, tasks.clone()),
            (Rule::PolicyFailsOpen, tasks)
        ],
        "{report:#?}"
    );
    assert!(
        report.findings[1]
            .detail
            .contains("passes the read policies"),
        "{report:#?}"
    );
    assert!(
        detail.contains("an insert of a row of another tenant is accepted"),
        "{detail}"
    );
}

#[tokio::test]
async fn restrictive_policy_for_one_command_only() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;
             CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR SELECT
               USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid));";
    // Reads are closed; an insert with no tenant is not.
    let report = expect_on_tasks("doc_restrictive_select", m, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("with the tenant unset, an insert of a row of another tenant is accepted"),
        "{detail}"
    );
    assert!(detail.contains("INSERT, UPDATE, DELETE"), "{detail}");
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
    let report = expect_on_tasks("doc_per_row", m, Rule::PolicyPerRow).await;
    // Every command is read per row: the first is named.
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("policy `iso` reads the tenant setting for every row (SELECT)"),
        "{detail}"
    );
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
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
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
    // The fix replaces the global key (it does not keep it beside a new one).
    assert!(report.findings[0].fix.contains("DROP INDEX"), "{report:#?}");
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
    let mut conn = admin(DATABASE).await;
    conn.batch_execute(&format!(
        "INSERT INTO \"{schema}\".projects VALUES ('{TENANT_A}', 2, 'b')"
    ))
    .await
    .expect("the global key is gone: tenant A may use tenant B's name");
}

#[tokio::test]
async fn fixes_quote_the_schema_index_constraint_and_column_names_they_use() {
    // Every name needs quoting (capitals, spaces): a fix that left one unquoted would fail.
    let schema = "Doc Quoted Fixes";
    let m = r#"CREATE UNIQUE INDEX "Projects Name" ON {s}.projects (name);
             ALTER TABLE {s}.tasks ADD CONSTRAINT "Task Country" UNIQUE (country);
             ALTER TABLE {s}.tasks ADD COLUMN "Other Tenant" uuid;
             ALTER TABLE {s}.tasks ADD CONSTRAINT "Task Project"
               FOREIGN KEY ("Other Tenant", project_id) REFERENCES {s}.projects (tenant_id, id);"#;
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    let mut rules = found(&report);
    rules.sort_by_key(|(rule, table)| (rule.to_string(), table.clone()));
    assert_eq!(
        rules,
        vec![
            (Rule::ForeignKeyWithoutTenant, t(schema, "tasks")),
            (Rule::UniqueWithoutTenant, t(schema, "projects")),
            (Rule::UniqueWithoutTenant, t(schema, "tasks")),
        ],
        "{report:#?}"
    );
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
}

#[tokio::test]
async fn a_unique_primary_key_without_the_tenant_is_replaced() {
    let schema = "doc_unique_pk";
    let m = "SET ROLE tenant_db_owner;
             CREATE TABLE {s}.labels (tenant_id uuid NOT NULL, code text NOT NULL PRIMARY KEY);
             CREATE INDEX ON {s}.labels (tenant_id);
             RESET ROLE;
             GRANT INSERT ON {s}.labels TO tenant_db_app;";
    let m = format!(
        "{m}{}",
        policy_sql_for(&format!("\"{schema}\".labels"), "tenant_id", KeyType::Uuid)
    );
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::UniqueWithoutTenant, t(schema, "labels"))],
        "{report:#?}"
    );
    assert!(
        report.findings[0]
            .fix
            .contains("PRIMARY KEY (\"tenant_id\", \"code\")")
    );
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
}

#[tokio::test]
async fn unique_keys_the_app_cannot_choose_are_not_reported() {
    // Server-generated keys (a random UUID default, an identity, a sequence) and keys of a
    // table the app role cannot write: no value of the app's choosing can probe them.
    let schema = "doc_unique_controls";
    let m = format!(
        "SET ROLE {OWNER_ROLE};
         CREATE TABLE {{s}}.sessions (tenant_id uuid NOT NULL,
             id uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
             seq bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
             serial_no bigserial UNIQUE,
             PRIMARY KEY (tenant_id, id));
         CREATE TABLE {{s}}.invoices (tenant_id uuid NOT NULL, number text NOT NULL UNIQUE,
             PRIMARY KEY (tenant_id, number));
         RESET ROLE;
         GRANT INSERT, UPDATE ON {{s}}.sessions TO {APP_ROLE};
         {}{}",
        policy_sql_for(
            &format!("\"{schema}\".sessions"),
            "tenant_id",
            KeyType::Uuid
        ),
        policy_sql_for(
            &format!("\"{schema}\".invoices"),
            "tenant_id",
            KeyType::Uuid
        ),
    );
    expect_clean(schema, &m).await;
    // The same key with a default the audit cannot judge is reported, saying so.
    let unsure = format!(
        "{m} ALTER TABLE {{s}}.sessions ALTER COLUMN id SET DEFAULT md5(random()::text)::uuid;"
    );
    let report = audit_with(schema, &unsure, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::UniqueWithoutTenant, t(schema, "sessions"))],
        "{report:#?}"
    );
    assert!(
        report.findings[0].detail.contains("cannot judge"),
        "{report:#?}"
    );
}

#[tokio::test]
async fn foreign_key_that_does_not_pair_the_tenant_columns() {
    let m = "ALTER TABLE {s}.tasks ADD COLUMN other_tenant uuid;
             ALTER TABLE {s}.tasks ADD FOREIGN KEY (other_tenant, project_id)
               REFERENCES {s}.projects (tenant_id, id);";
    let report = expect_on_tasks("doc_fk", m, Rule::ForeignKeyWithoutTenant).await;
    assert!(
        report.findings[0]
            .fix
            .contains("FOREIGN KEY (\"tenant_id\", \"project_id\") REFERENCES"),
        "{report:#?}"
    );
}

#[tokio::test]
async fn a_foreign_key_the_app_cannot_write_is_not_reported() {
    let m = "ALTER TABLE {s}.tasks ADD COLUMN other_tenant uuid;
             ALTER TABLE {s}.tasks ADD FOREIGN KEY (other_tenant, project_id)
               REFERENCES {s}.projects (tenant_id, id);
             REVOKE INSERT, UPDATE ON {s}.tasks FROM tenant_db_app;";
    expect_clean("doc_fk_readonly", m).await;
}

/// Roles of the given attribute for one test, reset to it on every run (a fix turns it off).
fn attribute_role(name: &str, attribute: &str) -> String {
    format!(
        "DO $$ BEGIN
           IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN
             CREATE ROLE {name} NOLOGIN; END IF;
         END $$;
         ALTER ROLE {name} {attribute};"
    )
}

#[tokio::test]
async fn app_role_superuser() {
    let config = DoctorConfig {
        app_role: Some("doc_super_app".into()),
        ..DoctorConfig::default()
    };
    let m = attribute_role("doc_super_app", "SUPERUSER");
    let report = audit_with("doc_superuser", &m, config.clone()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleSuperuser, String::new())]
    );
    fixes_converge(DATABASE, "doc_superuser", &report, config).await;
}

#[tokio::test]
async fn app_role_that_may_take_tenant_locks() {
    let config = DoctorConfig {
        app_role: Some("doc_locks_app".into()),
        ..DoctorConfig::default()
    };
    let m = format!(
        "{}{}GRANT EXECUTE ON FUNCTION pg_catalog.pg_try_advisory_lock_shared(integer, integer) \
         TO doc_locks_app;",
        attribute_role("doc_locks_app", "NOBYPASSRLS"),
        tenant_db::roles::grants_sql(OWNER_ROLE, "doc_locks_app", "doc_tenant_locks").unwrap()
    );
    let report = audit_with("doc_tenant_locks", &m, config.clone()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleTenantLocks, String::new())]
    );
    assert!(
        report.findings[0]
            .fix
            .contains("REVOKE EXECUTE ON FUNCTION pg_catalog.pg_advisory_lock(integer, integer)"),
        "{}",
        report.findings[0].fix
    );
    fixes_converge(DATABASE, "doc_tenant_locks", &report, config).await;
}

#[tokio::test]
async fn app_role_bypassrls() {
    let config = DoctorConfig {
        app_role: Some("doc_bypass_attr_app".into()),
        ..DoctorConfig::default()
    };
    let m = format!(
        "{}{}",
        attribute_role("doc_bypass_attr_app", "BYPASSRLS"),
        tenant_db::roles::grants_sql(OWNER_ROLE, "doc_bypass_attr_app", "doc_bypass").unwrap()
    );
    let report = audit_with("doc_bypass", &m, config.clone()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleBypassRls, String::new())]
    );
    fixes_converge(DATABASE, "doc_bypass", &report, config).await;
}

#[tokio::test]
async fn app_role_owns_a_tenant_table() {
    let m = format!("ALTER TABLE {{s}}.tasks OWNER TO {APP_ROLE};");
    let report = expect_on_tasks("doc_owner", &m, Rule::AppRoleOwnsTable).await;
    assert!(report.findings[0].fix.contains(OWNER_ROLE), "{report:#?}");
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
            .starts_with("REVOKE TRIGGER, TRUNCATE ON"),
        "{report:#?}"
    );
    fixes_converge(DATABASE, "doc_truncate", &report, DoctorConfig::default()).await;
}

#[tokio::test]
async fn a_privilege_held_through_a_role_is_revoked_from_that_role() {
    let m = "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_maintenance') THEN
                 CREATE ROLE doc_maintenance NOLOGIN; END IF;
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_priv_app') THEN
                 CREATE ROLE doc_priv_app NOLOGIN; END IF;
             END $$;
             GRANT doc_maintenance TO doc_priv_app;
             GRANT USAGE ON SCHEMA {s} TO doc_priv_app;
             GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO doc_priv_app;
             GRANT TRUNCATE ON {s}.tasks TO doc_maintenance;";
    let config = DoctorConfig {
        app_role: Some("doc_priv_app".into()),
        ..DoctorConfig::default()
    };
    let report = audit_with("doc_priv_through", m, config.clone()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRolePrivilege, t("doc_priv_through", "tasks"))],
        "{report:#?}"
    );
    assert!(
        report.findings[0]
            .fix
            .ends_with("FROM \"doc_maintenance\";"),
        "{report:#?}"
    );
    fixes_converge(DATABASE, "doc_priv_through", &report, config).await;
}

#[tokio::test]
async fn view_without_security_invoker() {
    let schema = "doc_view";
    let m = "CREATE VIEW {s}.all_tasks AS SELECT id FROM {s}.tasks;
             CREATE VIEW {s}.safe_tasks WITH (security_invoker = true) AS SELECT id FROM {s}.tasks;
             CREATE VIEW {s}.unreadable AS SELECT id FROM {s}.tasks;
             GRANT SELECT ON {s}.all_tasks, {s}.safe_tasks TO tenant_db_app;";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(
            Rule::ViewWithoutSecurityInvoker,
            format!("{schema}.all_tasks")
        )]
    );
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
}

/// Functions are looked for in every schema the app role can use, so each function fixture
/// has a database of its own.
async fn audit_functions(database: &'static str, functions: &str) -> Report {
    set_up_in(database, "app", functions).await;
    audit_in(database, "app", &DoctorConfig::default()).await
}

#[tokio::test]
async fn security_definer_functions_that_read_tenant_tables_unbound() {
    // Owned by the superuser: its rights ignore every policy.
    let report = audit_functions(
        "tenant_db_doctor_fn_plain",
        "CREATE FUNCTION {s}.count_tasks() RETURNS bigint LANGUAGE sql SECURITY DEFINER
           SET search_path = pg_catalog AS 'SELECT count(*) FROM app.tasks';",
    )
    .await;
    assert_eq!(
        found(&report),
        vec![(Rule::SecurityDefinerReadsTenantTable, t("app", "tasks"))],
        "{report:#?}"
    );
    assert!(report.findings[0].detail.contains("count_tasks()"));
    // One table: named in `table`; `tables` lists several only.
    assert_eq!(report.findings[0].tables, Vec::<String>::new());
    fixes_converge(
        "tenant_db_doctor_fn_plain",
        "app",
        &report,
        DoctorConfig::default(),
    )
    .await;
}

#[tokio::test]
async fn a_definer_that_runs_dynamic_sql_reaches_every_tenant_table() {
    let report = audit_functions(
        "tenant_db_doctor_fn_dynamic",
        "CREATE FUNCTION {s}.run(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
           SET search_path = pg_catalog AS $$ BEGIN EXECUTE q; END $$;",
    )
    .await;
    assert_eq!(
        found(&report),
        vec![(Rule::SecurityDefinerReadsTenantTable, String::new())],
        "{report:#?}"
    );
    assert_eq!(
        report.findings[0].tables,
        vec![t("app", "projects"), t("app", "tasks")]
    );
    fixes_converge(
        "tenant_db_doctor_fn_dynamic",
        "app",
        &report,
        DoctorConfig::default(),
    )
    .await;
}

#[tokio::test]
async fn a_definer_with_a_standard_sql_body_in_another_schema_is_read() {
    // `BEGIN ATOMIC`: no `prosrc`; and a schema the audit was not asked about, but the app role
    // can use.
    let report = audit_functions(
        "tenant_db_doctor_fn_atomic",
        "DROP SCHEMA IF EXISTS reports CASCADE;
         CREATE SCHEMA reports;
         GRANT USAGE ON SCHEMA reports TO tenant_db_app;
         CREATE FUNCTION reports.task_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER
           SET search_path = pg_catalog
           BEGIN ATOMIC SELECT count(*) FROM app.tasks; END;",
    )
    .await;
    assert_eq!(
        found(&report),
        vec![(Rule::SecurityDefinerReadsTenantTable, t("app", "tasks"))],
        "{report:#?}"
    );
    assert!(report.findings[0].detail.contains("reports.task_count()"));
    fixes_converge(
        "tenant_db_doctor_fn_atomic",
        "app",
        &report,
        DoctorConfig::default(),
    )
    .await;
}

#[tokio::test]
async fn membership_in_a_definer_functions_owner_is_found() {
    let database = "tenant_db_doctor_fn_member";
    let roles = "DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_fn_owner') THEN
            CREATE ROLE doc_fn_owner NOLOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_fn_app') THEN
            CREATE ROLE doc_fn_app NOLOGIN; END IF;
        END $$;
        GRANT doc_fn_owner TO doc_fn_app;
        GRANT USAGE ON SCHEMA {s} TO doc_fn_owner;
        CREATE FUNCTION {s}.stamp() RETURNS int LANGUAGE sql SECURITY DEFINER
          SET search_path = pg_catalog AS 'SELECT 1';
        ALTER FUNCTION {s}.stamp() OWNER TO doc_fn_owner;";
    set_up_in(database, "app", roles).await;
    let config = DoctorConfig {
        app_role: Some("doc_fn_app".into()),
        ..DoctorConfig::default()
    };
    let report = audit_in(database, "app", &config).await;
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleOwnsTable, String::new())],
        "{report:#?}"
    );
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("doc_fn_app → doc_fn_owner") && detail.contains("app.stamp()"),
        "{detail}"
    );
    fixes_converge(database, "app", &report, config).await;
}

#[tokio::test]
async fn definers_bound_by_forced_policies_pass_and_every_definer_sets_its_search_path() {
    // Owned by the tables' owner, which is neither superuser nor BYPASSRLS, on forced tables:
    // the policies bind it as they bind the caller. The function without `SET search_path` is
    // found whatever it reads.
    let report = audit_functions(
        "tenant_db_doctor_fn_bound",
        "SET ROLE tenant_db_owner;
         CREATE FUNCTION {s}.count_tasks() RETURNS bigint LANGUAGE sql SECURITY DEFINER
           SET search_path = pg_catalog AS 'SELECT count(*) FROM app.tasks';
         CREATE FUNCTION {s}.run(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
           SET search_path = pg_catalog AS $$ BEGIN EXECUTE q; END $$;
         RESET ROLE;
         CREATE FUNCTION {s}.harmless() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1';",
    )
    .await;
    assert_eq!(
        found(&report),
        vec![(Rule::DefinerWithoutSearchPath, String::new())],
        "{report:#?}"
    );
    assert!(report.findings[0].detail.contains("harmless()"));
    fixes_converge(
        "tenant_db_doctor_fn_bound",
        "app",
        &report,
        DoctorConfig::default(),
    )
    .await;
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
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
}

#[tokio::test]
async fn discovery_by_another_column_name() {
    let schema = "doc_registered";
    let m = "CREATE TABLE {s}.accounts (org_id uuid NOT NULL, id bigint NOT NULL,
                 PRIMARY KEY (org_id, id));
             ALTER TABLE {s}.accounts ENABLE ROW LEVEL SECURITY;
             ALTER TABLE {s}.accounts OWNER TO tenant_db_owner;";
    let config = DoctorConfig {
        tenant_columns: vec!["tenant_id".into(), "org_id".into()],
        ..DoctorConfig::default()
    };
    let report = audit_with(schema, m, config.clone()).await;
    let accounts = t(schema, "accounts");
    assert_eq!(
        found(&report),
        vec![
            (Rule::RlsNotForced, accounts.clone()),
            (Rule::NoRestrictivePolicy, accounts.clone()),
        ]
    );
    assert!(report.tenant_tables.contains(&(accounts, "org_id".into())));
    // One transaction for the table; the second finding points at the first one's fix.
    assert_eq!(report.fixes.len(), 1, "{report:#?}");
    assert!(
        report.findings[1]
            .fix
            .starts_with("-- fixed by the `rls-not-forced` fix")
    );
    fixes_converge(DATABASE, schema, &report, config).await;
}

#[tokio::test]
async fn a_registered_or_global_table_that_is_missing_fails_the_audit() {
    let schema = "doc_registered_missing";
    set_up_in(DATABASE, schema, "").await;
    let url = app_url().await;
    let config = DoctorConfig {
        registered: vec![(schema.into(), "ghost".into(), "tenant_id".into())],
        ..config_for(schema, DoctorConfig::default())
    };
    let err = audit_url(&url, &config).await.unwrap_err().to_string();
    assert!(
        err.contains("\"ghost\"") && err.contains("not in the database"),
        "{err}"
    );
    let config = DoctorConfig {
        global_tables: vec!["countries".into(), "currencies".into()],
        ..config_for(schema, DoctorConfig::default())
    };
    let err = audit_url(&url, &config).await.unwrap_err().to_string();
    assert!(err.contains("currencies"), "{err}");
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
    let report = audit_with(schema, &m, config.clone()).await;
    assert!(
        report
            .tenant_tables
            .contains(&(accounts.clone(), "org_id".into()))
    );
    assert_eq!(found(&report), vec![(Rule::RlsNotForced, accounts)]);
    fixes_converge(DATABASE, schema, &report, config).await;
}

#[tokio::test]
async fn tables_keyed_by_bigint_integer_text_and_varchar_pass_with_their_own_policy() {
    let schema = "doc_keys";
    let mut m = String::new();
    // Readable and writable by the app role, with rows of two tenants: probed as each kind.
    let tables = [
        ("ledgers", "bigint", KeyType::BigInt, ["41", "42"]),
        ("seats", "integer", KeyType::Integer, ["41", "42"]),
        ("workspaces", "text", KeyType::Text, ["acme", "globex"]),
        ("boards", "varchar(64)", KeyType::Text, ["acme", "globex"]),
    ];
    for (table, ty, key, [a, b]) in tables {
        let name = t(schema, table);
        m.push_str(&format!(
            "CREATE TABLE {name} (tenant_id {ty} NOT NULL, id bigint NOT NULL,
                 PRIMARY KEY (tenant_id, id));
             ALTER TABLE {name} OWNER TO {OWNER_ROLE};
             INSERT INTO {name} VALUES ('{a}', 1), ('{b}', 1);
             GRANT SELECT, INSERT ON {name} TO {APP_ROLE};
             {}",
            policy_sql_for(&name, "tenant_id", key)
        ));
    }
    let config = DoctorConfig {
        sample_tenants: vec!["41".into(), "acme".into()],
        ..DoctorConfig::default()
    };
    let report = audit_with(schema, &m, config.clone()).await;
    assert_eq!(report.tenant_tables.len(), 6, "{report:#?}");
    assert_eq!(found(&report), vec![], "{report:#?}");
    assert_eq!(report.notes, Vec::<String>::new());
    // Opened, each kind's table is found by the probe.
    for (table, _, _, _) in tables {
        m.push_str(&format!(
            "DROP POLICY tenant_db_isolation ON {};",
            t(schema, table)
        ));
    }
    let report = audit_with(schema, &m, config.clone()).await;
    let expected: Vec<(Rule, String)> = ["boards", "ledgers", "seats", "workspaces"]
        .iter()
        .map(|table| (Rule::PolicyFailsOpen, t(schema, table)))
        .collect();
    assert_eq!(found(&report), expected, "{report:#?}");
    for f in &report.findings {
        assert!(f.detail.contains("2 row(s)"), "{f:#?}");
        // A foreign tenant of the column's own type was made up and inserted.
        assert!(
            f.detail.contains("as a tenant that owns no row")
                && f.detail
                    .contains("an insert of a row of another tenant is accepted"),
            "{f:#?}"
        );
    }
    assert_eq!(report.notes, Vec::<String>::new());
    fixes_converge(DATABASE, schema, &report, config).await;
}

#[tokio::test]
async fn a_write_only_permissive_policy_is_named_by_its_check() {
    let m =
        "DROP POLICY tenant_db_isolation ON {s}.tasks; DROP POLICY tenant_db_access ON {s}.tasks;
             CREATE POLICY r ON {s}.tasks AS PERMISSIVE FOR SELECT
               USING (tenant_id = (SELECT tenant_db.current_tenant()::uuid));
             CREATE POLICY w ON {s}.tasks AS PERMISSIVE FOR INSERT WITH CHECK (true);";
    let report = expect_on_tasks("doc_write_only", m, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("an insert of a row of another tenant is accepted (no restrictive policy applies; permissive `w` lets it through)"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_policy_of_another_key_kind_or_a_column_of_no_key_type_is_found() {
    let schema = "doc_key_mistakes";
    let ledgers = t(schema, "ledgers");
    let codes = t(schema, "codes");
    let loose = t(schema, "loose");
    let slugs = t(schema, "slugs");
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
         ALTER TABLE {loose} OWNER TO {OWNER_ROLE};
         CREATE TABLE {slugs} (tenant_id char(8) NOT NULL, id bigint NOT NULL,
             PRIMARY KEY (tenant_id, id));
         ALTER TABLE {slugs} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY,
             OWNER TO {OWNER_ROLE};",
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
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
    let mut got = found(&report);
    got.sort();
    // `slugs`: the column's type is changed before its policy is made, in one transaction.
    let mut expected = vec![
        (Rule::NoRestrictivePolicy, ledgers.clone()),
        (Rule::NoRestrictivePolicy, slugs.clone()),
        (Rule::TenantColumnType, codes.clone()),
        (Rule::TenantColumnType, loose.clone()),
        (Rule::TenantColumnType, slugs.clone()),
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
        fixes_converge(DATABASE, "doc_membership", &report, config).await;
    }
    // A member of the tables' owner: found on each tenant table; the fix converges.
    let config = DoctorConfig {
        app_role: Some("doc_owner_app".into()),
        ..DoctorConfig::default()
    };
    let grant = format!("{roles} GRANT {OWNER_ROLE} TO doc_owner_app;");
    let report = audit_with("doc_membership", &grant, config.clone()).await;
    // One problem, one finding, naming every table the owner owns (the global one too).
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleOwnsTable, String::new())],
        "{report:#?}"
    );
    assert_eq!(
        report.findings[0].tables,
        vec![
            t("doc_membership", "projects"),
            t("doc_membership", "tasks"),
            t("doc_membership", "countries")
        ]
    );
    fixes_converge(DATABASE, "doc_membership", &report, config).await;
}

/// Runs the CLI; returns its exit code and standard output.
fn cli(args: &[&str]) -> (i32, String) {
    let (code, stdout, _) = common::run(args);
    (code, stdout)
}

/// The quickstart example's models, as the example declares them.
mod quickstart {
    #![allow(dead_code, unreachable_pub)]
    diesel::table! {
        customers (tenant_id, id) { tenant_id -> Uuid, id -> BigInt, name -> Text, plan_code -> Text, }
    }
    diesel::table! {
        plans (code) { code -> Text, name -> Text, }
    }
    #[derive(diesel::Queryable, diesel::Selectable, tenant_db::TenantTable)]
    #[diesel(table_name = customers)]
    pub struct Customer {
        pub tenant_id: uuid::Uuid,
        pub id: i64,
        pub name: String,
        pub plan_code: String,
    }
    #[derive(diesel::Queryable, diesel::Selectable, tenant_db::GlobalTable)]
    #[diesel(table_name = plans)]
    pub struct Plan {
        pub code: String,
        pub name: String,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_passes_a_database_set_up_as_the_quickstart_does() {
    // The quickstart's set-up: provision, then its migrations with RLS for its models.
    const MIGRATIONS: diesel_migrations::EmbeddedMigrations =
        diesel_migrations::embed_migrations!("../examples/migrations");
    let database = tenant_db_tests::fresh::register("tenant_db_quickstart_doctor").unwrap();
    let urls =
        tenant_db::provision::Provision::new(&database, "quickstart_owner", "quickstart_app")
            .run(&tenant_db_tests::admin_url())
            .await
            .unwrap();
    let registry =
        tenant_db::registry::Registry::collected_under(&format!("{}::quickstart", module_path!()))
            .unwrap();
    assert_eq!(registry.tables().count(), 2);
    tenant_db_migrate::run(&urls, MIGRATIONS, &registry)
        .await
        .unwrap();
    let (code, stdout) = cli(&[
        "doctor",
        "--database-url",
        &urls.app_url,
        "--global-table",
        "plans",
    ]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("no findings"), "{stdout}");
    assert!(
        stdout.contains("\"public\".\"customers\" (tenant_id)"),
        "{stdout}"
    );
}

#[test]
fn rls_sql_prints_the_registered_tables_or_the_named_one() {
    // The installed command registers nothing: it says how to get the registered tables.
    let (code, _, stderr) = common::run(&["rls-sql"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("tenant_db_cli::run"), "{stderr}");
    // A table named on the command line, with its key type and a write grant.
    let (code, sql) = cli(&[
        "rls-sql",
        "--table",
        "billing.Ledgers",
        "--column",
        "account_id",
        "--key-type",
        "bigint",
        "--app-role",
        "app",
    ]);
    assert_eq!(code, 0);
    assert!(sql.starts_with(&tenant_db::seal::setup_sql()), "{sql}");
    assert!(
        sql.contains(&policy_sql_for(
            "\"billing\".\"Ledgers\"",
            "account_id",
            KeyType::BigInt
        )),
        "{sql}"
    );
    assert!(
        sql.contains("ON \"billing\".\"Ledgers\" TO \"app\""),
        "{sql}"
    );
    for bad in [
        &["rls-sql", "--table", "notes"][..],
        &[
            "rls-sql",
            "--table",
            "notes",
            "--column",
            "t",
            "--key-type",
            "money",
        ],
        &["rls-sql", "--table", "a..b", "--column", "t"],
    ] {
        assert_eq!(cli(bad).0, 2, "{bad:?}");
    }
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
        "--global-table",
        "countries",
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

    let (code, table) = cli(&[
        "doctor",
        "--database-url",
        &url,
        "--schema",
        schema,
        "--global-table",
        "countries",
    ]);
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

// --- The probe: fail-open forms the text does not show, each with its sound control. ---

/// Replaces the tasks table's tenant policy with `policy` (`{s}` the schema).
fn tasks_policy(policy: &str) -> String {
    format!("DROP POLICY tenant_db_isolation ON {{s}}.tasks; {policy}")
}

#[tokio::test]
async fn a_prefix_match_that_matches_everything_when_the_setting_is_empty() {
    let m = tasks_policy(
        "CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
           USING (tenant_id::text LIKE (SELECT current_setting('app.current_tenant', true) || '%'));",
    );
    let report = expect_on_tasks("doc_like", &m, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(detail.contains("setting empty"), "{detail}");
    assert!(detail.contains("restrictive policy `iso`"), "{detail}");
    // On an empty table, the made-up row finds it too.
    let empty = format!("DELETE FROM {{s}}.tasks; {m}");
    let report = expect_on_tasks("doc_like_empty", &empty, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("setting empty (as after a SET LOCAL), a row of another tenant passes the read policies (restrictive policy `iso` lets it through)"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_setting_the_application_never_sets() {
    // The application sets the tenant through tenant_db.enter; `app.tenant` stays unset, so
    // the coalesce keeps every row.
    let m = tasks_policy(
        "CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
           USING (tenant_id = coalesce((SELECT NULLIF(current_setting('app.tenant', true), '')::uuid), tenant_id));",
    );
    expect_on_tasks("doc_never_set", &m, Rule::PolicyFailsOpen).await;
}

#[tokio::test]
async fn an_exists_subquery_that_never_compares_the_row() {
    // Checks that the tenant has a project, never that the row is the tenant's: closed with no
    // tenant and for an unknown one, open for every real tenant. Found by probing as a tenant
    // seen in the data.
    let m = tasks_policy(
        "CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
           USING (EXISTS (SELECT 1 FROM {s}.projects p
                          WHERE p.tenant_id = (SELECT tenant_db.current_tenant()::uuid)));",
    );
    let schema = "doc_exists";
    // Connected as the app role, which sees no tenant, and told no tenant: the text looks
    // sound and no probe state has a real tenant, so nothing is found. Named tenants find it.
    let blind = audit_with(schema, &m, DoctorConfig::default()).await;
    assert_eq!(found(&blind), vec![], "{blind:#?}");
    let config = DoctorConfig {
        sample_tenants: vec![TENANT_A.into()],
        ..DoctorConfig::default()
    };
    let report = audit_in(DATABASE, schema, &config).await;
    assert_eq!(
        found(&report),
        vec![(Rule::CrossTenantRead, t(schema, "tasks"))],
        "{report:#?}"
    );
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains(&format!("as tenant {TENANT_A}")),
        "{detail}"
    );
    assert!(detail.contains("1 row(s) of other tenants"), "{detail}");
    // A privileged connection acting for the app role samples the tenants itself.
    let config = DoctorConfig {
        app_role: Some(APP_ROLE.into()),
        ..DoctorConfig::default()
    };
    let sampled = audit_in(DATABASE, schema, &config).await;
    assert_eq!(found(&sampled), found(&report), "{sampled:#?}");
    fixes_converge(DATABASE, schema, &report, config).await;
}

#[tokio::test]
async fn a_second_permissive_policy_that_opens_on_another_setting() {
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks; DROP POLICY tenant_db_access ON {s}.tasks;
             CREATE POLICY by_tenant ON {s}.tasks AS PERMISSIVE FOR ALL
               USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid));
             CREATE POLICY support ON {s}.tasks AS PERMISSIVE FOR SELECT
               USING ((SELECT current_setting('app.support_mode', true)) = 'on');";
    let report = expect_on_tasks("doc_second_permissive", m, Rule::CrossTenantRead).await;
    let detail = &report.findings[0].detail;
    assert!(detail.contains("app.support_mode set to 'on'"), "{detail}");
    assert!(detail.contains("permissive `support`"), "{detail}");
    assert!(
        detail.contains("only in permissive policy `by_tenant`"),
        "{detail}"
    );
}

#[tokio::test]
async fn case_coalesce_and_is_not_distinct_from_forms_fail_open() {
    for (schema, using) in [
        (
            "doc_case",
            "CASE WHEN (SELECT current_setting('app.current_tenant', true)) = '' THEN true
                  ELSE tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid) END",
        ),
        (
            "doc_coalesce",
            "tenant_id = coalesce((SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid), tenant_id)",
        ),
        (
            "doc_not_distinct",
            "(SELECT NULLIF(current_setting('app.current_tenant', true), '')) IS NOT DISTINCT FROM NULL
             OR tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid)",
        ),
    ] {
        let m = tasks_policy(&format!(
            "CREATE POLICY iso ON {{s}}.tasks AS RESTRICTIVE FOR ALL USING ({using});"
        ));
        expect_on_tasks(schema, &m, Rule::PolicyFailsOpen).await;
        // Open for reads only (a sound write check): still a fail-open.
        let m = tasks_policy(&format!(
            "CREATE POLICY iso ON {{s}}.tasks AS RESTRICTIVE FOR ALL USING ({using})
               WITH CHECK (tenant_id = (SELECT tenant_db.current_tenant()::uuid));"
        ));
        let report = expect_on_tasks(&format!("{schema}_reads"), &m, Rule::PolicyFailsOpen).await;
        assert!(
            !report.findings[0].detail.contains("insert"),
            "{report:#?}"
        );
    }
}

#[tokio::test]
async fn a_sound_read_policy_with_an_open_write_check() {
    // `WITH CHECK (true)`: any row, with or without a tenant.
    let m = tasks_policy(
        "CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
           USING (tenant_id = (SELECT tenant_db.current_tenant()::uuid)) WITH CHECK (true);",
    );
    let report = expect_on_tasks("doc_open_check", &m, Rule::PolicyFailsOpen).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("with the tenant unset, an insert of a row of another tenant is accepted (restrictive policy `iso` lets it through)"),
        "{detail}"
    );
    // A check that wants some tenant, not the row's: closed without a tenant, open across
    // tenants.
    let m = tasks_policy(
        "CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
           USING (tenant_id = (SELECT tenant_db.current_tenant()::uuid))
           WITH CHECK ((SELECT tenant_db.current_tenant()) IS NOT NULL);",
    );
    let report = expect_on_tasks("doc_some_tenant_check", &m, Rule::CrossTenantWrite).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("as a tenant that owns no row")
            && detail.contains("insert of a row of another tenant is accepted"),
        "{detail}"
    );
}

#[tokio::test]
async fn controls_one_restrictive_policy_per_command_and_a_soft_delete_condition() {
    let sealed = "tenant_id = (SELECT tenant_db.current_tenant()::uuid)";
    let per_command = tasks_policy(&format!(
        "CREATE POLICY r ON {{s}}.tasks AS RESTRICTIVE FOR SELECT USING ({sealed});
         CREATE POLICY i ON {{s}}.tasks AS RESTRICTIVE FOR INSERT WITH CHECK ({sealed});
         CREATE POLICY u ON {{s}}.tasks AS RESTRICTIVE FOR UPDATE USING ({sealed}) WITH CHECK ({sealed});
         CREATE POLICY d ON {{s}}.tasks AS RESTRICTIVE FOR DELETE USING ({sealed});"
    ));
    expect_clean("doc_per_command", &per_command).await;
    let soft_delete = tasks_policy(&format!(
        "ALTER TABLE {{s}}.tasks ADD COLUMN deleted_at timestamptz;
         CREATE POLICY iso ON {{s}}.tasks AS RESTRICTIVE FOR ALL
           USING ({sealed} AND deleted_at IS NULL) WITH CHECK ({sealed});"
    ));
    expect_clean("doc_soft_delete", &soft_delete).await;
}

#[tokio::test]
async fn a_table_with_triggers_is_not_written_to_and_the_report_says_so() {
    let m = "CREATE FUNCTION {s}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
             CREATE TRIGGER touch BEFORE INSERT ON {s}.tasks FOR EACH ROW EXECUTE FUNCTION {s}.touch();";
    let report = audit_with("doc_triggers", m, DoctorConfig::default()).await;
    assert_eq!(found(&report), vec![], "{report:#?}");
    assert!(
        report.notes.iter().any(|n| n.contains("has triggers")),
        "{report:#?}"
    );
}

/// Everything an audit could change: every table's rows, the tables' write statistics, the
/// planner's statistics and the sequences.
async fn fingerprint(database: &str, schema: &str) -> String {
    #[derive(diesel::QueryableByName)]
    struct Line {
        #[diesel(sql_type = diesel::sql_types::Text)]
        line: String,
    }
    let mut conn = admin(database).await;
    // Statistics reach the views within a second; read a fresh snapshot after that.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    conn.batch_execute("SELECT pg_stat_clear_snapshot()")
        .await
        .unwrap();
    let sql = format!(
        "SELECT c.relname || ': ' ||
                (xpath('/row/c/text()', query_to_xml(format('SELECT md5(coalesce(string_agg(t::text, '','' ORDER BY t::text), '''')) AS c FROM %I.%I t', n.nspname, c.relname), false, true, '')))[1]::text
                || ' ins=' || s.n_tup_ins || ' upd=' || s.n_tup_upd || ' del=' || s.n_tup_del
                || ' live=' || s.n_live_tup || ' dead=' || s.n_dead_tup
                || ' mod=' || s.n_mod_since_analyze || ' analyzed=' || coalesce(s.last_analyze::text, '-')
                || ' reltuples=' || c.reltuples || ' relpages=' || c.relpages
                || ' stats=' || (SELECT count(*) FROM pg_statistic st WHERE st.starelid = c.oid) AS line
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE n.nspname = '{schema}' AND c.relkind = 'r'
         UNION ALL
         SELECT 'sequence ' || sequencename || '=' || coalesce(last_value::text, '-')
         FROM pg_sequences WHERE schemaname = '{schema}'
         ORDER BY 1"
    );
    let lines: Vec<Line> = diesel_async::RunQueryDsl::load(diesel::sql_query(sql), &mut conn)
        .await
        .unwrap();
    lines
        .into_iter()
        .map(|l| l.line)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn the_probe_changes_no_data_and_no_statistics() {
    // A table whose policies accept foreign writes and show foreign rows, with a sequence.
    let schema = "doc_unchanged";
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;
             ALTER TABLE {s}.tasks ADD COLUMN serial_no bigserial;
             ANALYZE {s}.tasks;";
    set_up_in(DATABASE, schema, m).await;
    let before = fingerprint(DATABASE, schema).await;
    assert!(before.contains("sequence tasks_serial_no_seq"), "{before}");
    let report = audit_in(DATABASE, schema, &DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::PolicyFailsOpen, t(schema, "tasks"))],
        "{report:#?}"
    );
    assert!(
        report.findings[0]
            .detail
            .contains("insert of a row of another tenant is accepted"),
        "{report:#?}"
    );
    let after = fingerprint(DATABASE, schema).await;
    assert_eq!(before, after);
}

// --- Coverage: every table the app role can reach is a tenant table or declared global. ---

#[tokio::test]
async fn a_table_neither_tenant_nor_global_is_found() {
    let schema = "doc_unclassified";
    let m = "SET ROLE tenant_db_owner;
             CREATE TABLE {s}.users (id bigint PRIMARY KEY, email text NOT NULL);
             CREATE TABLE {s}.internal (id bigint PRIMARY KEY);
             RESET ROLE;
             REVOKE ALL ON {s}.internal FROM tenant_db_app;";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::UnclassifiedTable, t(schema, "users"))],
        "{report:#?}"
    );
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
    // Declared global, it passes.
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    let config = DoctorConfig {
        global_tables: vec!["countries".into(), format!("{schema}.users")],
        ..DoctorConfig::default()
    };
    let declared = audit_in(DATABASE, schema, &config).await;
    assert_eq!(found(&declared), vec![], "{report:#?}");
    // Not declaring the fixtures' countries table makes it unclassified too.
    let undeclared = audit_in(
        DATABASE,
        schema,
        &DoctorConfig {
            global_tables: vec![format!("{schema}.users")],
            ..DoctorConfig::default()
        },
    )
    .await;
    assert_eq!(
        found(&undeclared),
        vec![(Rule::UnclassifiedTable, t(schema, "countries"))]
    );
}

diesel::table! {
    doc_global_code.countries (code) {
        code -> Text,
    }
}

/// A global table declared from code.
#[derive(diesel::Queryable, tenant_db::GlobalTable)]
#[diesel(table_name = countries)]
#[allow(dead_code)]
struct Country {
    code: String,
}

#[tokio::test]
async fn global_tables_declared_from_code() {
    let schema = "doc_global_code";
    let config = DoctorConfig {
        schemas: vec![schema.into()],
        ..DoctorConfig::default()
    }
    .global::<countries::table>()
    .unwrap();
    assert_eq!(config.global_tables, vec![format!("{schema}.countries")]);
    set_up_in(DATABASE, schema, "").await;
    let report = audit_url(&app_url().await, &config).await.unwrap();
    assert_eq!(found(&report), vec![], "{report:#?}");
    let undeclared = DoctorConfig {
        schemas: vec![schema.into()],
        ..DoctorConfig::default()
    };
    let report = audit_url(&app_url().await, &undeclared).await.unwrap();
    assert_eq!(
        found(&report),
        vec![(Rule::UnclassifiedTable, t(schema, "countries"))]
    );
}

#[tokio::test]
async fn writes_to_global_tables_and_the_migrations_table_are_found() {
    let schema = "doc_global_writes";
    let m = "CREATE TABLE {s}.__diesel_schema_migrations (version varchar(50) PRIMARY KEY,
                 run_on timestamp NOT NULL DEFAULT now());
             GRANT SELECT, INSERT, DELETE ON {s}.__diesel_schema_migrations TO tenant_db_app;
             GRANT UPDATE ON {s}.countries TO PUBLIC;";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![
            (
                Rule::GlobalTableWritable,
                t(schema, "__diesel_schema_migrations")
            ),
            (Rule::GlobalTableWritable, t(schema, "countries")),
        ],
        "{report:#?}"
    );
    assert!(
        report.findings[1].fix.contains("FROM PUBLIC"),
        "{report:#?}"
    );
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
}

// --- Output. ---

#[tokio::test]
async fn cli_output_wraps_lists_several_tables_and_does_not_double_prefixes() {
    let database = "tenant_db_doctor_fn_dynamic_cli";
    set_up_in(
        database,
        "app",
        "CREATE FUNCTION {s}.run(q text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER
           AS $$ BEGIN EXECUTE q; END $$;
         ALTER TABLE {s}.tasks NO FORCE ROW LEVEL SECURITY;",
    )
    .await;
    let url = app_url_for(database).await;
    let args = [
        "doctor",
        "--database-url",
        &url,
        "--schema",
        "app",
        "--global-table",
        "countries",
    ];
    let json = Command::new(env!("CARGO_BIN_EXE_tenant-db"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let findings = doc["findings"].as_array().unwrap();
    let definer = findings
        .iter()
        .find(|f| f["rule"] == "security-definer-reads-tenant-table")
        .unwrap();
    assert_eq!(definer["table"], "");
    assert_eq!(
        definer["tables"],
        serde_json::json!([t("app", "projects"), t("app", "tasks")])
    );
    let fixes = doc["fixes"].as_array().unwrap();
    let tables: Vec<&str> = fixes.iter().map(|f| f["table"].as_str().unwrap()).collect();
    let mut unique = tables.clone();
    unique.dedup();
    assert_eq!(tables, unique, "one fix per table");

    let human = Command::new(env!("CARGO_BIN_EXE_tenant-db"))
        .args(args)
        .env("COLUMNS", "100")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    let table: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(['┌', '│', '├', '╞', '└']))
        .collect();
    assert!(table.len() > 4, "{text}");
    assert!(
        table.iter().all(|l| l.chars().count() <= 100),
        "wider than 100 columns:\n{text}"
    );
    assert!(text.contains("BEGIN;"), "{text}");

    let missing = Command::new(env!("CARGO_BIN_EXE_tenant-db"))
        .args(["doctor", "--database-url", &url, "--schema", "nope"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2));
    assert_eq!(
        stderr.trim(),
        "tenant-db doctor: schema `nope` does not exist"
    );
}

#[tokio::test]
async fn a_connection_that_already_set_the_tenant_is_said_to_have() {
    // After a transaction that set it, a setting reads '' instead of NULL: the truly unset
    // state cannot be probed on that connection, and the report says so.
    let schema = "doc_used_connection";
    set_up_in(DATABASE, schema, "").await;
    let mut conn = AsyncPgConnection::establish(&app_url().await)
        .await
        .unwrap();
    conn.batch_execute("BEGIN; SELECT set_config('app.current_tenant', 'x', true); COMMIT;")
        .await
        .unwrap();
    let config = config_for(schema, DoctorConfig::default());
    let report = tenant_db::doctor::audit(&mut conn, &config).await.unwrap();
    assert_eq!(found(&report), vec![], "{report:#?}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("had already set app.current_tenant")),
        "{report:#?}"
    );
    let fresh = AsyncPgConnection::establish(&app_url().await)
        .await
        .unwrap();
    let mut fresh = fresh;
    let report = tenant_db::doctor::audit(&mut fresh, &config).await.unwrap();
    assert_eq!(report.notes, Vec::<String>::new());
}

#[tokio::test]
async fn a_fix_that_fails_half_way_leaves_the_table_as_it_was() {
    // RLS on, no policy: closed. Its fix makes the restrictive and the permissive policy; run
    // statement by statement (as psql runs a file by default) with the restrictive one failing,
    // the permissive one must not be left behind opening the table.
    let schema = "doc_interrupted_fix";
    let m =
        "DROP POLICY tenant_db_isolation ON {s}.tasks; DROP POLICY tenant_db_access ON {s}.tasks;";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![(Rule::NoRestrictivePolicy, t(schema, "tasks"))],
        "{report:#?}"
    );
    let fix = &report.fixes[0].sql;
    let broken = fix.replace(
        "(SELECT tenant_db.current_tenant()::uuid)",
        "(SELECT tenant_db.current_tenant()::no_such_type)",
    );
    assert_ne!(&broken, fix);
    let mut conn = admin(DATABASE).await;
    let mut failed = 0;
    for statement in broken.split(";\n").filter(|s| !s.trim().is_empty()) {
        if conn.batch_execute(statement).await.is_err() {
            failed += 1;
        }
    }
    assert!(failed > 0, "the broken fix failed nowhere");
    let after = audit_in(DATABASE, schema, &DoctorConfig::default()).await;
    assert_eq!(found(&after), found(&report), "{after:#?}");
}

#[tokio::test]
async fn the_probe_looks_at_a_hundred_rows_at_most() {
    let m = "INSERT INTO {s}.projects SELECT '00000000-0000-4000-8000-00000000000c', g, 'p' || g
               FROM generate_series(2, 200) g;
             DROP POLICY tenant_db_isolation ON {s}.projects;";
    let report = audit_with("doc_many_rows", m, DoctorConfig::default()).await;
    let projects = report
        .findings
        .iter()
        .find(|f| f.table == t("doc_many_rows", "projects"))
        .unwrap();
    assert!(
        projects.detail.contains("sees 100 or more row(s)"),
        "{projects:#?}"
    );
}

#[tokio::test]
async fn a_table_locked_by_someone_else_does_not_hang_the_audit() {
    // Reading the catalog locks the tables it describes, and the probe reads them: held by
    // another session, the audit gives up after its lock timeout (2 s) and says why.
    let schema = "doc_locked";
    set_up_in(DATABASE, schema, "").await;
    let mut holder = admin(DATABASE).await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".tasks IN ACCESS EXCLUSIVE MODE;"
        ))
        .await
        .unwrap();
    let config = config_for(schema, DoctorConfig::default());
    let url = app_url().await;
    let audit = audit_url(&url, &config);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), audit)
        .await
        .expect("the audit waited for the lock");
    holder.batch_execute("ROLLBACK").await.unwrap();
    let err = outcome.unwrap_err().to_string();
    assert!(err.contains("lock timeout"), "{err}");

    // A table the catalog read does not lock (no policy, no default) is locked only for the
    // probe: the audit finishes, and says what it could not try.
    let m = format!(
        "SET ROLE {OWNER_ROLE};
         CREATE TABLE {{s}}.plain (tenant_id uuid NOT NULL, id bigint NOT NULL,
             PRIMARY KEY (tenant_id, id));
         RESET ROLE;"
    );
    set_up_in(DATABASE, schema, &m).await;
    holder
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE \"{schema}\".plain IN ACCESS EXCLUSIVE MODE;"
        ))
        .await
        .unwrap();
    let audit = audit_url(&url, &config);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(30), audit)
        .await
        .expect("the probe waited for the lock");
    holder.batch_execute("ROLLBACK").await.unwrap();
    let report = outcome.unwrap();
    assert!(
        report.notes.iter().any(|n| n.contains("lock timeout")),
        "{report:#?}"
    );
}

#[tokio::test]
async fn policies_that_do_not_bind_the_app_role_are_not_tried_with_a_made_up_row() {
    // RLS off on an empty table whose only policy lets every row through: the table is found
    // for RLS being off, and the made-up row is not tried against policies not in force (the
    // report would blame a policy for what RLS being off does).
    let schema = "doc_unbound_policies";
    let m = "DELETE FROM {s}.tasks;
             DROP POLICY tenant_db_isolation ON {s}.tasks;
             ALTER TABLE {s}.tasks DISABLE ROW LEVEL SECURITY;";
    let report = audit_with(schema, m, DoctorConfig::default()).await;
    assert!(
        found(&report).contains(&(Rule::RlsDisabled, t(schema, "tasks"))),
        "{report:#?}"
    );
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.detail.contains("passes the read policies")),
        "{report:#?}"
    );
}

#[tokio::test]
async fn policies_of_a_table_the_app_role_owns_unforced_are_not_tried_with_a_made_up_row() {
    // The other way policies stop binding: RLS on, but the application role owns the table and
    // RLS is not forced, so the owner bypasses them. The table is found for that, and the
    // made-up row is not tried against the allow-all policy left on it.
    let schema = "doc_unforced_policies";
    let m = format!(
        "DELETE FROM {{s}}.tasks;
         DROP POLICY tenant_db_isolation ON {{s}}.tasks;
         ALTER TABLE {{s}}.tasks OWNER TO {APP_ROLE};
         ALTER TABLE {{s}}.tasks NO FORCE ROW LEVEL SECURITY;"
    );
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    let found = found(&report);
    assert!(
        found.contains(&(Rule::RlsNotForced, t(schema, "tasks"))),
        "{report:#?}"
    );
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.detail.contains("passes the read policies")),
        "{report:#?}"
    );
}

#[tokio::test]
async fn policy_that_reads_the_tenant_setting_directly() {
    // Isolating as long as nothing else sets `app.current_tenant`: only the text tells.
    let m = "DROP POLICY tenant_db_isolation ON {s}.tasks;
             CREATE POLICY iso ON {s}.tasks AS RESTRICTIVE FOR ALL
               USING (tenant_id = (SELECT NULLIF(current_setting('app.current_tenant', true), '')::uuid));";
    let report = expect_on_tasks("doc_forgeable", m, Rule::PolicyTrustsForgeableSetting).await;
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("policy `iso` reads `app.current_tenant` directly"),
        "{detail}"
    );
}

#[tokio::test]
async fn an_update_policy_that_checks_nothing_of_the_new_row() {
    // A restrictive policy per command, each comparing the tenant soundly, but the one for
    // UPDATE lets an updated row become any tenant's: `WITH CHECK (true)`.
    let c = "tenant_id = (SELECT tenant_db.current_tenant()::uuid)";
    let m = format!(
        "DROP POLICY tenant_db_isolation ON {{s}}.tasks;
         CREATE POLICY r ON {{s}}.tasks AS RESTRICTIVE FOR SELECT USING ({c});
         CREATE POLICY a ON {{s}}.tasks AS RESTRICTIVE FOR INSERT WITH CHECK ({c});
         CREATE POLICY w ON {{s}}.tasks AS RESTRICTIVE FOR UPDATE USING ({c}) WITH CHECK (true);
         CREATE POLICY d ON {{s}}.tasks AS RESTRICTIVE FOR DELETE USING ({c});"
    );
    let report = expect_on_tasks("doc_update_check", &m, Rule::NoRestrictivePolicy).await;
    let detail = &report.findings[0].detail;
    assert!(detail.contains("of its key type for UPDATE"), "{detail}");
}

#[tokio::test]
async fn membership_in_the_owner_of_a_table_and_of_two_definers_is_one_finding() {
    let database = "tenant_db_doctor_fn_table_member";
    let roles = "DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_fnt_owner') THEN
            CREATE ROLE doc_fnt_owner NOLOGIN; END IF;
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'doc_fnt_app') THEN
            CREATE ROLE doc_fnt_app NOLOGIN; END IF;
        END $$;
        GRANT doc_fnt_owner TO doc_fnt_app;
        GRANT USAGE ON SCHEMA {s} TO doc_fnt_owner;
        CREATE TABLE {s}.ledger (id bigint PRIMARY KEY);
        ALTER TABLE {s}.ledger OWNER TO doc_fnt_owner;
        CREATE FUNCTION {s}.stamp() RETURNS int LANGUAGE sql SECURITY DEFINER
          SET search_path = pg_catalog AS 'SELECT 1';
        ALTER FUNCTION {s}.stamp() OWNER TO doc_fnt_owner;
        CREATE FUNCTION {s}.stamp_again() RETURNS int LANGUAGE sql SECURITY DEFINER
          SET search_path = pg_catalog AS 'SELECT 2';
        ALTER FUNCTION {s}.stamp_again() OWNER TO doc_fnt_owner;";
    set_up_in(database, "app", roles).await;
    let config = DoctorConfig {
        app_role: Some("doc_fnt_app".into()),
        ..DoctorConfig::default()
    };
    let report = audit_in(database, "app", &config).await;
    // One membership, one finding: on its one table (named in `table`, so `tables` is empty),
    // naming both functions; the table is not reported again as unclassified.
    assert_eq!(
        found(&report),
        vec![(Rule::AppRoleOwnsTable, t("app", "ledger"))],
        "{report:#?}"
    );
    assert_eq!(report.findings[0].tables, Vec::<String>::new());
    let detail = &report.findings[0].detail;
    assert!(
        detail.contains("the owner of \"app\".\"ledger\" and of SECURITY DEFINER function(s) app.stamp(), app.stamp_again()"),
        "{detail}"
    );
    fixes_converge(database, "app", &report, config).await;
}

#[tokio::test]
async fn tables_the_app_role_owns_itself_are_found_unclassified_or_global() {
    let schema = "doc_app_owns_plain";
    let m = format!(
        "CREATE TABLE {{s}}.notes (id bigint PRIMARY KEY);
         ALTER TABLE {{s}}.notes OWNER TO {APP_ROLE};
         ALTER TABLE {{s}}.countries OWNER TO {APP_ROLE};"
    );
    let report = audit_with(schema, &m, DoctorConfig::default()).await;
    assert_eq!(
        found(&report),
        vec![
            (Rule::UnclassifiedTable, t(schema, "notes")),
            (Rule::GlobalTableWritable, t(schema, "countries")),
        ],
        "{report:#?}"
    );
    assert!(
        report.findings[0]
            .detail
            .contains("the application role owns"),
        "{report:#?}"
    );
    assert!(
        report.findings[1]
            .detail
            .contains("the application role owns global table"),
        "{report:#?}"
    );
    fixes_converge(DATABASE, schema, &report, DoctorConfig::default()).await;
}
