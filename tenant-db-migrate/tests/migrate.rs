//! Provisioning and migrations with RLS, end to end, as a service would write them.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tenant_db::doctor::{DoctorConfig, Rule, audit_url};
use tenant_db::prelude::*;
use tenant_db::provision::{Provision, Provisioned};
use tenant_db::registry::Registry;
use tenant_db_migrate::MigrateError;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/migrations");
const OWNER: &str = "tenant_db_migrate_owner";
const APP: &str = "tenant_db_migrate_app";

mod models {
    #![allow(missing_docs, dead_code, unreachable_pub)]
    use tenant_db::{GlobalTable, TenantTable, TenantValues};

    diesel::table! {
        projects (tenant_id, id) { tenant_id -> Uuid, id -> BigInt, name -> Text, }
    }
    diesel::table! {
        tasks (tenant_id, id) { tenant_id -> Uuid, id -> BigInt, project_id -> BigInt, title -> Text, }
    }
    diesel::table! {
        plans (code) { code -> Text, name -> Text, }
    }

    #[derive(diesel::Queryable, diesel::Selectable, TenantTable)]
    #[diesel(table_name = projects)]
    pub struct Project {
        pub tenant_id: uuid::Uuid,
        pub id: i64,
        pub name: String,
    }

    #[derive(TenantValues)]
    #[diesel(table_name = projects)]
    pub struct NewProject {
        pub id: i64,
        pub name: String,
    }

    #[derive(diesel::Queryable, diesel::Selectable, TenantTable)]
    #[diesel(table_name = tasks)]
    pub struct Task {
        pub tenant_id: uuid::Uuid,
        pub id: i64,
        pub project_id: i64,
        pub title: String,
    }

    #[derive(diesel::Queryable, diesel::Selectable, GlobalTable)]
    #[diesel(table_name = plans)]
    pub struct Plan {
        pub code: String,
        pub name: String,
    }
}
use models::*;

/// The tables this file's models registered, and nothing another crate linked in registered.
fn registry() -> Registry {
    Registry::collected_under(module_path!()).unwrap()
}

/// This process's fresh database for `base`, dropped when it exits (see
/// `tenant_db_tests::fresh`).
fn fresh(base: &str) -> String {
    tenant_db_tests::fresh::register(base).unwrap()
}

async fn provisioned(database: &str) -> Provisioned {
    Provision::new(database, OWNER, APP)
        .run(&tenant_db_tests::admin_url())
        .await
        .unwrap()
}

async fn count(url: &str, sql: &str) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = AsyncPgConnection::establish(url).await.unwrap();
    let n: N = diesel::sql_query(sql).get_result(&mut conn).await.unwrap();
    n.n
}

#[test]
fn the_derives_register_every_model_table() {
    let registry = registry();
    let names: Vec<(&str, Option<&str>)> = registry
        .tables()
        .map(|t| (t.name(), t.tenant_column()))
        .collect();
    assert_eq!(
        names,
        [
            ("\"plans\"", None),
            ("\"projects\"", Some("tenant_id")),
            ("\"tasks\"", Some("tenant_id")),
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn provision_and_migrations_apply_rls_to_every_registered_table_and_run_twice() {
    let database = &fresh("tenant_db_migrate_test");
    let urls = provisioned(database).await;
    // Provisioned by a superuser: the two-key advisory locks (the tenant fences) are the
    // owner's alone in the new database.
    assert!(urls.tenant_locks_guarded);
    let mut app = AsyncPgConnection::establish(&urls.app_url).await.unwrap();
    let e = app
        .batch_execute("SELECT pg_advisory_xact_lock(1, 2)")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("permission denied"), "{e}");
    // Twice: the second run applies no migration and changes nothing.
    tenant_db_migrate::run(&urls, MIGRATIONS, &registry())
        .await
        .unwrap();
    let urls = provisioned(database).await;
    let again = tenant_db_migrate::run(&urls, MIGRATIONS, &registry())
        .await
        .unwrap();
    assert!(again.applied.is_empty(), "{again:?}");
    assert_eq!(again.tenant_tables, ["\"projects\"", "\"tasks\""]);

    // The database is what the doctor wants, probe included.
    let report = audit_url(
        &urls.app_url,
        &DoctorConfig::default().registry(&registry()),
    )
    .await
    .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(report.tenant_tables.len(), 2);

    // Every registered tenant table is isolated, forced, for the application role.
    let db = TenantDb::connect(&urls.app_url, 2).unwrap();
    let (a, b) = (
        Tenant::assume_verified(TenantId::new_random()),
        Tenant::assume_verified(TenantId::new_random()),
    );
    db.transaction(a, async |mut tx| {
        let s = tx.scope();
        s.insert(projects::table)
            .values(NewProject {
                id: 1,
                name: "a's".into(),
            })
            .execute(&mut tx)
            .await?;
        Ok::<_, tenant_db::Error>(())
    })
    .await
    .unwrap();
    let seen: Vec<String> = db
        .transaction(b, async |mut tx| {
            let s = tx.scope();
            Ok::<_, tenant_db::Error>(
                s.query(projects::table)
                    .select(projects::name)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert!(seen.is_empty());
    for table in ["projects", "tasks"] {
        // RLS as the owner too (forced), with no tenant set.
        assert_eq!(
            count(
                &urls.owner_url,
                &format!("SELECT count(*) AS n FROM {table}")
            )
            .await,
            0
        );
    }
    // The application role reads global tables and writes none, nor diesel's bookkeeping.
    let mut app = AsyncPgConnection::establish(&urls.app_url).await.unwrap();
    assert_eq!(
        count(&urls.app_url, "SELECT count(*) AS n FROM plans").await,
        1
    );
    for sql in [
        "INSERT INTO plans VALUES ('x', 'x')",
        "DELETE FROM __diesel_schema_migrations",
        "SELECT 1 FROM __diesel_schema_migrations",
    ] {
        let err = app.batch_execute(sql).await.unwrap_err();
        assert!(
            err.to_string().contains("permission denied"),
            "{sql}: {err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_doctor_finds_policies_that_drifted_and_its_fix_restores_them() {
    let database = &fresh("tenant_db_migrate_drift");
    // From an empty database: each step below changes its policies.
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        .await
        .unwrap();
    let urls = provisioned(database).await;
    tenant_db_migrate::run(&urls, MIGRATIONS, &registry())
        .await
        .unwrap();
    let config = DoctorConfig::default().registry(&registry());
    let mut owner = AsyncPgConnection::establish(&urls.owner_url).await.unwrap();
    // Each drift still isolates tenants (the probe finds nothing): only the comparison with
    // the generated policies sees it.
    for (drift, expect) in [
        (
            "CREATE POLICY reports ON projects AS RESTRICTIVE FOR SELECT USING (id > 0)",
            "policy reports is not one tenant-db generates",
        ),
        (
            "ALTER POLICY tenant_db_access ON tasks USING (id > 0)",
            "policy tenant_db_access was changed",
        ),
        (
            "ALTER POLICY tenant_db_isolation ON tasks TO tenant_db_migrate_app",
            "policy tenant_db_isolation was changed",
        ),
        (
            "DROP POLICY tenant_db_access ON projects; \
             CREATE POLICY tenant_db_access ON projects FOR SELECT USING (true)",
            "policy tenant_db_access was changed",
        ),
        // Only the command differs.
        (
            "DROP POLICY tenant_db_isolation ON tasks; \
             CREATE POLICY tenant_db_isolation ON tasks AS RESTRICTIVE FOR UPDATE \
             USING (tenant_id = (SELECT tenant_db.current_tenant()::uuid)) \
             WITH CHECK (tenant_id = (SELECT tenant_db.current_tenant()::uuid))",
            "policy tenant_db_isolation was changed",
        ),
        // Only the check of new rows differs.
        (
            "ALTER POLICY tenant_db_isolation ON projects WITH CHECK (id > 0)",
            "policy tenant_db_isolation was changed",
        ),
        // A function in a schema whose name prints like `tenant_db` once quotes are dropped.
        (
            r#"CREATE SCHEMA IF NOT EXISTS "tenant_db""";
               CREATE OR REPLACE FUNCTION "tenant_db""".current_tenant() RETURNS text
                   LANGUAGE sql STABLE AS $$ SELECT NULL::text $$;
               ALTER POLICY tenant_db_isolation ON tasks
                   USING (tenant_id = (SELECT "tenant_db""".current_tenant()::uuid))
                   WITH CHECK (tenant_id = (SELECT "tenant_db""".current_tenant()::uuid))"#,
            "policy tenant_db_isolation was changed",
        ),
    ] {
        owner.batch_execute(drift).await.unwrap();
        let report = audit_url(&urls.app_url, &config).await.unwrap();
        let drifts: Vec<_> = report
            .findings
            .iter()
            .filter(|f| f.rule == Rule::PolicyDrift)
            .collect();
        assert_eq!(drifts.len(), 1, "{drift}: {:#?}", report.findings);
        assert!(
            drifts[0].detail.contains(expect),
            "{drift}: {:#?}",
            drifts[0]
        );
        owner.batch_execute(&report.fix_script()).await.unwrap();
        let report = audit_url(&urls.app_url, &config).await.unwrap();
        assert!(report.is_clean(), "{drift}: {:#?}", report.findings);
    }
    // A table found by its column name alone is not compared: nothing says what it should be.
    owner
        .batch_execute("CREATE POLICY reports ON projects AS RESTRICTIVE FOR SELECT USING (id > 0)")
        .await
        .unwrap();
    let unregistered = audit_url(
        &urls.app_url,
        &DoctorConfig {
            global_tables: vec!["plans".into()],
            ..DoctorConfig::default()
        },
    )
    .await
    .unwrap();
    assert!(unregistered.is_clean(), "{:#?}", unregistered.findings);
    owner
        .batch_execute("DROP POLICY reports ON projects")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_refuses_a_database_another_role_owns() {
    let database = &fresh("tenant_db_migrate_test");
    provisioned(database).await;
    let err = Provision::new(database, "tenant_db_migrate_other", APP)
        .run(&tenant_db_tests::admin_url())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("owned by tenant_db_migrate_owner, not tenant_db_migrate_other"),
        "{err}"
    );
}

#[tokio::test]
async fn provisioning_creates_roles_that_do_not_exist_yet() {
    let database = &fresh("tenant_db_migrate_roles");
    let run = tenant_db_tests::fresh::suffix();
    let (owner, app) = (format!("tdb_owner_{run}"), format!("tdb_app_{run}"));
    let admin_url = tenant_db_tests::admin_url();
    // Not there before: provisioning creates them.
    let existing =
        format!("SELECT count(*) AS n FROM pg_roles WHERE rolname IN ('{owner}', '{app}')");
    assert_eq!(count(&admin_url, &existing).await, 0);
    let urls = Provision::new(database, &owner, &app)
        .run(&admin_url)
        .await
        .unwrap();
    // The application role logs in, and is neither a superuser, nor BYPASSRLS, nor the owner.
    let restricted = "SELECT count(*) AS n FROM pg_roles r JOIN pg_database d \
        ON d.datname = current_database() WHERE r.rolname = current_user \
        AND NOT r.rolsuper AND NOT r.rolbypassrls AND d.datdba <> r.oid";
    assert_eq!(count(&urls.app_url, restricted).await, 1);
    let owner_role = "SELECT count(*) AS n FROM pg_roles WHERE rolname = current_user \
        AND NOT rolsuper";
    assert_eq!(count(&urls.owner_url, owner_role).await, 1);
    // Roles outlive databases: the test removes its own.
    let mut admin = AsyncPgConnection::establish(&admin_url).await.unwrap();
    for sql in [
        format!("DROP DATABASE \"{database}\" WITH (FORCE)"),
        format!("DROP ROLE \"{app}\""),
        format!("DROP ROLE \"{owner}\""),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
    assert_eq!(count(&admin_url, &existing).await, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_is_an_error_not_a_panic() {
    let urls = provisioned(&fresh("tenant_db_migrate_test")).await;
    let err = tenant_db_migrate::run(&urls, MIGRATIONS, &registry())
        .await
        .unwrap_err();
    assert!(matches!(err, MigrateError::Runtime), "{err}");
}

/// The analyst's set-up: provisioned with an analyst role, migrated, two tenants with rows.
async fn analytics() -> (Provisioned, tenant_db::Tenant, tenant_db::Tenant) {
    let database = fresh("tenant_db_migrate_analytics");
    let urls = Provision::new(&database, OWNER, APP)
        .analyst("tenant_db_migrate_analyst")
        .run(&tenant_db_tests::admin_url())
        .await
        .unwrap();
    tenant_db_migrate::run(&urls, MIGRATIONS, &registry())
        .await
        .unwrap();
    let db = TenantDb::connect(&urls.app_url, 2).unwrap();
    let (a, b) = (
        Tenant::assume_verified(TenantId::new_random()),
        Tenant::assume_verified(TenantId::new_random()),
    );
    for (tenant, name) in [(a, "of a"), (b, "of b")] {
        db.transaction(tenant, async |mut tx| {
            let s = tx.scope();
            s.insert(projects::table)
                .values(NewProject {
                    id: 1,
                    name: name.into(),
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, tenant_db::Error>(())
        })
        .await
        .unwrap();
    }
    (urls, a, b)
}

fn analyst_url(urls: &Provisioned) -> String {
    tenant_db::provision::with_role(
        &urls.app_url,
        "tenant_db_migrate_analyst",
        None,
        &fresh("tenant_db_migrate_analytics"),
    )
    .unwrap()
}

#[derive(diesel::QueryableByName, Debug)]
struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

fn all_grant(reason: &str) -> tenant_db::admin::AdminGrant {
    tenant_db::admin::AdminGrant::all_tenants_read_only(
        "analyst@bi",
        tenant_db::admin::Reason::text(reason).unwrap(),
        std::time::Duration::from_secs(600),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_analyst_reads_every_tenant_only_in_an_audited_read_only_transaction() {
    let (urls, a, b) = analytics().await;
    let mut analyst = AsyncPgConnection::establish(&analyst_url(&urls))
        .await
        .unwrap();
    let reason = format!("quarterly report {}", uuid::Uuid::new_v4());
    let names: Vec<Name> =
        tenant_db::admin::read_all(&mut analyst, &all_grant(&reason), async |conn| {
            Ok(diesel::sql_query("SELECT name FROM tenant_db_all.projects")
                .load(conn)
                .await?)
        })
        .await
        .unwrap();
    let names: Vec<String> = names.into_iter().map(|n| n.name).collect();
    // Each grant opens only its own door.
    let tenant_grant = tenant_db::admin::AdminGrant::for_tenant(
        "analyst@bi",
        tenant_db::admin::Reason::text("one tenant").unwrap(),
        a.id(),
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let err = tenant_db::admin::read_all(&mut analyst, &tenant_grant, async |_conn| Ok(()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tenant_db::Error::Admin(tenant_db::admin::AdminError::ReadOnlyGrant)
        ),
        "{err}"
    );
    let app_db = TenantDb::connect(&urls.app_url, 1).unwrap();
    let err = app_db
        .admin_transaction(&all_grant("not a tenant grant"), async |_tx| {
            Ok::<_, tenant_db::Error>(())
        })
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            tenant_db::Error::Admin(tenant_db::admin::AdminError::ReadOnlyGrant)
        ),
        "{err}"
    );
    assert!(
        names.contains(&"of a".to_string()) && names.contains(&"of b".to_string()),
        "{names:?}"
    );
    let _ = (a, b);
    // On the record: who, why, every tenant.
    let rows = tenant_db::admin::recent(&mut analyst_owner(&urls).await, 1000)
        .await
        .unwrap();
    let granted: Vec<_> = rows.iter().filter(|r| r.reason == reason).collect();
    assert_eq!(granted.len(), 1, "{rows:#?}");
    assert_eq!(
        (granted[0].event.as_str(), granted[0].tenant.as_str()),
        ("granted", "*")
    );
    assert_eq!(granted[0].db_user, "tenant_db_migrate_analyst");

    // Outside such a transaction the views are empty, the tables closed.
    assert_eq!(
        count(
            &analyst_url(&urls),
            "SELECT count(*) AS n FROM tenant_db_all.projects"
        )
        .await,
        0
    );
    for sql in ["SELECT * FROM projects", "SELECT * FROM tasks"] {
        let err = analyst.batch_execute(sql).await.unwrap_err().to_string();
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    // Inside, writing is refused, through the views or by switching back to read-write.
    for sql in [
        "INSERT INTO tenant_db_all.projects (tenant_id, id, name) VALUES (gen_random_uuid(), 9, 'x')",
        "UPDATE tenant_db_all.projects SET name = 'x'",
        "DELETE FROM tenant_db_all.projects",
        "SET TRANSACTION READ WRITE",
        "SET transaction_read_only = off",
    ] {
        let result =
            tenant_db::admin::read_all(&mut analyst, &all_grant("write attempt"), async |conn| {
                Ok(conn.batch_execute(sql).await?)
            })
            .await;
        assert!(result.is_err(), "{sql} was allowed");
    }
    // A failed read is on the record too: the grant row was committed before.
    let failing = format!("rolled back {}", uuid::Uuid::new_v4());
    let result: Result<(), tenant_db::Error> =
        tenant_db::admin::read_all(&mut analyst, &all_grant(&failing), async |conn| {
            let _: Vec<Name> = diesel::sql_query("SELECT name FROM tenant_db_all.projects")
                .load(conn)
                .await?;
            Err(tenant_db::Error::Lifecycle("the report failed".into()))
        })
        .await;
    assert!(result.is_err());
    let rows = tenant_db::admin::recent(&mut analyst_owner(&urls).await, 1000)
        .await
        .unwrap();
    assert!(rows.iter().any(|r| r.reason == failing), "{rows:#?}");
}

async fn analyst_owner(urls: &Provisioned) -> AsyncPgConnection {
    AsyncPgConnection::establish(&urls.owner_url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_all_tenants_door_cannot_be_forced() {
    let (urls, _, _) = analytics().await;
    let url = analyst_url(&urls);
    let mut analyst = AsyncPgConnection::establish(&url).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct Access {
        #[diesel(sql_type = diesel::sql_types::Text)]
        access: String,
    }
    let access: Access = diesel::sql_query(
        "SELECT tenant_db.request_all_access('a', 'b', interval '1 minute')::text AS access",
    )
    .get_result(&mut analyst)
    .await
    .unwrap();
    let access = access.access;
    // Each attempt is a sequence of messages; then the views are read in the same transaction.
    let attempts: Vec<Vec<String>> = vec![
        // Not the first message of its transaction.
        vec![
            "BEGIN READ ONLY; SELECT 1".to_string(),
            format!("SELECT tenant_db.enter_all('{access}')"),
        ],
        // Not a grant.
        vec![format!(
            "BEGIN; SELECT tenant_db.enter_all('{}')",
            uuid::Uuid::new_v4()
        )],
        // The marker set by hand.
        vec!["BEGIN READ ONLY; SET LOCAL tenant_db.all = 'on'".to_string()],
        // No reason, no actor, too long.
        vec!["SELECT tenant_db.request_all_access('a', ' ', interval '1 minute')".to_string()],
        vec!["SELECT tenant_db.request_all_access('', 'b', interval '1 minute')".to_string()],
        vec!["SELECT tenant_db.request_all_access('a', 'b', interval '25 hours')".to_string()],
    ];
    for messages in attempts {
        let mut entered = Ok(());
        for m in &messages {
            entered = entered.and(analyst.batch_execute(m).await);
        }
        let seen = match entered {
            Err(_) => 0,
            Ok(()) => {
                #[derive(diesel::QueryableByName)]
                struct N {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    n: i64,
                }
                let n: N = diesel::sql_query("SELECT count(*) AS n FROM tenant_db_all.projects")
                    .get_result(&mut analyst)
                    .await
                    .unwrap();
                n.n
            }
        };
        let _ = analyst.batch_execute("ROLLBACK").await;
        assert_eq!(seen, 0, "{messages:?}");
    }
    // An expired grant.
    let short: Access = diesel::sql_query(
        "SELECT tenant_db.request_all_access('a', 'b', interval '10 milliseconds')::text AS access",
    )
    .get_result(&mut analyst)
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let err = analyst
        .batch_execute(&format!(
            "BEGIN; SELECT tenant_db.enter_all('{}')",
            short.access
        ))
        .await
        .unwrap_err();
    let _ = analyst.batch_execute("ROLLBACK").await;
    assert!(err.to_string().contains("no committed, unexpired"), "{err}");
    // The application role has no part in it.
    let mut app = AsyncPgConnection::establish(&urls.app_url).await.unwrap();
    for sql in [
        "SELECT tenant_db.request_all_access('a', 'b', interval '1 minute')".to_string(),
        format!("BEGIN; SELECT tenant_db.enter_all('{access}')"),
        "SELECT * FROM tenant_db_all.projects".to_string(),
    ] {
        let err = app.batch_execute(&sql).await.unwrap_err().to_string();
        let _ = app.batch_execute("ROLLBACK").await;
        assert!(err.contains("permission denied"), "{sql}: {err}");
    }
    // And the doctor and the red-team kit still find nothing for it.
    let report = audit_url(
        &urls.app_url,
        &DoctorConfig::default().registry(&registry()),
    )
    .await
    .unwrap();
    assert!(report.is_clean(), "{:#?}", report.findings);
    let red = tenant_db::redteam::run(
        &urls.app_url,
        &tenant_db::redteam::Target::from_registry(&registry()),
    )
    .await
    .unwrap();
    assert!(red.is_clean(), "{red}");
}

#[tokio::test(flavor = "multi_thread")]
async fn provisioning_again_takes_back_what_others_were_given() {
    let database = &fresh("tenant_db_migrate_reclaim");
    // Its own application role: the others' tests must not see it changed meanwhile.
    const APP: &str = "tenant_db_migrate_reclaim_app";
    let provision = || async {
        Provision::new(database, OWNER, APP)
            .run(&tenant_db_tests::admin_url())
            .await
            .unwrap()
    };
    provision().await;
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'tenant_db_migrate_intruder') THEN
                 CREATE ROLE tenant_db_migrate_intruder LOGIN;
               END IF;
             EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;
             END $$;
             GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {database} TO tenant_db_migrate_intruder;
             ALTER ROLE {APP} REPLICATION;
             GRANT {OWNER} TO {APP};"
        ))
        .await
        .unwrap();
    provision().await;
    #[derive(diesel::QueryableByName)]
    struct Facts {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        intruder_connects: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        app_replicates: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        app_is_owner: bool,
    }
    let facts: Facts = diesel::sql_query(format!(
        "SELECT has_database_privilege('tenant_db_migrate_intruder', '{database}', 'CONNECT')
                  OR has_database_privilege('tenant_db_migrate_intruder', '{database}', 'CREATE')
                  OR has_database_privilege('tenant_db_migrate_intruder', '{database}', 'TEMPORARY')
                  AS intruder_connects,
                (SELECT rolreplication FROM pg_roles WHERE rolname = '{APP}') AS app_replicates,
                pg_has_role('{APP}', '{OWNER}', 'MEMBER') AS app_is_owner"
    ))
    .get_result(&mut admin)
    .await
    .unwrap();
    assert!(!facts.intruder_connects);
    assert!(!facts.app_replicates);
    assert!(!facts.app_is_owner);
}
