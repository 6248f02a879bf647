//! Audited admin access: a grant names actor, reason, tenant and expiry; every admin
//! transaction leaves an `opened` and a `closed` row in an append-only table, in the same
//! transaction, even when its work fails.

#![allow(clippy::unwrap_used, missing_docs)]

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use std::time::Duration;
use tenant_db::admin::{AdminError, AdminGrant, AuditRow, Reason, recent};
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb, values};
use tenant_db_tests::schema as keyed;
use tenant_db_tests::schema::*;
mod common;

fn grant(actor: &str, tenant: TenantId) -> AdminGrant {
    AdminGrant::for_tenant(
        actor,
        Reason::ticket("SUP-1234").unwrap(),
        tenant,
        Duration::from_secs(600),
    )
    .unwrap()
}

/// The audit rows of one actor, oldest first.
async fn audit_of(actor: &str) -> Vec<AuditRow> {
    let mut conn = AsyncPgConnection::establish(&common::app_url().await)
        .await
        .unwrap();
    let mut rows: Vec<AuditRow> = recent(&mut conn, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.actor == actor)
        .collect();
    rows.reverse();
    rows
}

fn actor() -> String {
    format!("support-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test]
async fn an_admin_transaction_acts_for_the_granted_tenant_and_is_audited() {
    let db = common::db_with_rls(2).await;
    let (a, b) = common::two_tenants(&db).await;
    for (tenant, name) in [(a, "only a"), (b, "only b")] {
        db.transaction(tenant, async |mut tx| {
            let s = tx.scope();
            s.insert(customers::table)
                .values(NewCustomer {
                    id: 99,
                    name: name.into(),
                    email: None,
                })
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap();
    }
    let who = actor();
    let names: Vec<String> = db
        .admin_transaction(&grant(&who, b.id()), async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .select(customers::name)
                    .order(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert_eq!(names.len(), 4);
    assert!(names.contains(&"only b".to_string()), "{names:?}");
    assert!(!names.contains(&"only a".to_string()), "{names:?}");
    let rows = audit_of(&who).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    let (granted, opened, closed) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(
        (
            granted.event.as_str(),
            opened.event.as_str(),
            closed.event.as_str()
        ),
        ("granted", "opened", "closed")
    );
    assert_eq!(opened.access_id, closed.access_id);
    assert_eq!(granted.access_id, closed.access_id);
    for row in [granted, opened, closed] {
        assert_eq!(row.reason, "ticket:SUP-1234");
        assert_eq!(row.tenant, b.id().to_string());
        assert_eq!(row.db_user, tenant_db_tests::APP_ROLE);
    }
    assert_eq!(closed.tables.as_deref(), Some("public.customers"));
    assert_eq!(closed.outcome.as_deref(), Some("ok"));
}

#[tokio::test]
async fn a_last_statement_in_an_admin_transaction_does_not_commit_before_the_record() {
    let db = common::db_with_rls(2).await;
    let (_a, b) = common::two_tenants(&db).await;
    let who = actor();
    // The closure marks its update as the transaction's last, then fails: the admin scope
    // still rolls the closure's work back and records the failure, in the same transaction.
    let outcome: Result<(), Error> = db
        .admin_transaction(&grant(&who, b.id()), async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .filter(customers::id.eq(1))
                .set(tenant_db::values!(
                    customers::table,
                    customers::name = "changed"
                ))
                .execute(tx.last())
                .await?;
            Err(Error::Doctor("changed my mind".into()))
        })
        .await;
    assert!(outcome.is_err());
    let names = common::customer_names(&db, b, 1).await;
    assert_eq!(names, vec!["c1".to_string()]);
    let rows = audit_of(&who).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(rows[2].event, "closed");
    assert!(
        rows[2]
            .outcome
            .as_deref()
            .is_some_and(|o| o.contains("changed my mind")),
        "{rows:#?}"
    );
}

#[tokio::test]
async fn a_failed_admin_transaction_rolls_its_work_back_and_stays_on_the_record() {
    let db = common::db_with_rls(2).await;
    let (a, _) = common::two_tenants(&db).await;
    let who = actor();
    let result: Result<(), Error> = db
        .admin_transaction(&grant(&who, a.id()), async |mut tx| {
            let s = tx.scope();
            s.update(customers::table)
                .set(values!(
                    customers::table,
                    customers::name = "changed by support"
                ))
                .execute(&mut tx)
                .await?;
            // Fails: the key exists.
            s.insert(customers::table)
                .values(NewCustomer {
                    id: 1,
                    name: "dup".into(),
                    email: None,
                })
                .execute(&mut tx)
                .await?;
            Ok(())
        })
        .await;
    assert!(result.is_err());
    let names: Vec<String> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .select(customers::name)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert!(names.iter().all(|n| n != "changed by support"), "{names:?}");
    let rows = audit_of(&who).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert!(
        rows[2].outcome.as_deref().unwrap().starts_with("error: "),
        "{rows:#?}"
    );
    assert_eq!(rows[2].tables.as_deref(), Some("public.customers"));
}

#[tokio::test]
async fn an_expired_grant_opens_nothing() {
    let db = common::db_with_rls(1).await;
    let a = keyed::new_tenant();
    let who = actor();
    let grant = AdminGrant::for_tenant(
        &who,
        Reason::text("look at the invoice").unwrap(),
        a.id(),
        Duration::from_millis(1),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let err = db
        .admin_transaction(&grant, async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Admin(AdminError::Expired)), "{err}");
    assert!(audit_of(&who).await.is_empty());
}

#[test]
fn a_grant_names_an_actor_a_reason_and_a_bounded_validity() {
    let id = TenantId::new_random();
    let ok = Reason::ticket("SUP-1").unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(Reason::ticket(" ").unwrap_err(), AdminError::NoReason);
    assert_eq!(Reason::text("").unwrap_err(), AdminError::NoReason);
    assert_eq!(
        Reason::text("line\nbreak").unwrap_err(),
        AdminError::BadText("reason")
    );
    assert_eq!(
        Reason::text(&"x".repeat(1001)).unwrap_err(),
        AdminError::BadText("reason")
    );
    assert!(Reason::text(&"x".repeat(1000)).is_ok());
    // Reasons that print as nothing, or as something else.
    for invisible in [
        "\u{200B}",
        "\u{3164}",
        "\u{2800}",
        "\u{FEFF}",
        "...",
        "\u{202E}SUP-1",
    ] {
        assert!(Reason::text(invisible).is_err(), "{invisible:?}");
        assert!(AdminGrant::for_tenant(invisible, Reason::text("why").unwrap(), id, hour).is_err());
    }
    assert!(Reason::text("顧客の依頼").is_ok());
    assert_eq!(
        AdminGrant::for_tenant(" ", ok.clone(), id, hour).unwrap_err(),
        AdminError::NoActor
    );
    for bad in [Duration::ZERO, Duration::from_secs(24 * 3600 + 1)] {
        assert_eq!(
            AdminGrant::for_tenant("a", ok.clone(), id, bad).unwrap_err(),
            AdminError::Validity
        );
    }
    let g = AdminGrant::for_tenant(" alice ", ok, id, Duration::from_secs(24 * 3600)).unwrap();
    assert_eq!(
        (g.actor(), g.reason().as_str(), g.tenant_id()),
        ("alice", "ticket:SUP-1", Some(id))
    );
}

#[tokio::test]
async fn the_audit_table_is_append_only_for_the_application_role_and_the_owner() {
    let db = common::db_with_rls(1).await;
    let a = keyed::new_tenant();
    db.admin_transaction(&grant(&actor(), a.id()), async |_tx| Ok::<_, Error>(()))
        .await
        .unwrap();
    for url in [
        common::app_url().await,
        tenant_db_tests::url_for(tenant_db_tests::OWNER_ROLE, keyed::DATABASE),
    ] {
        let mut conn = AsyncPgConnection::establish(&url).await.unwrap();
        for sql in [
            // Written only through tenant_db.admin_audit_write: no row with a chosen id, time
            // or database role.
            "INSERT INTO tenant_db.admin_audit (id, access_id, event, actor, reason, tenant, expires_at, db_user)
             OVERRIDING SYSTEM VALUE VALUES (999999999, gen_random_uuid(), 'opened', 'x', 'y', '*', now(), 'postgres')",
            "UPDATE tenant_db.admin_audit SET reason = 'nothing to see'",
            "DELETE FROM tenant_db.admin_audit",
            "TRUNCATE tenant_db.admin_audit",
        ] {
            let is_app = url.contains(tenant_db_tests::APP_ROLE);
            if sql.starts_with("INSERT") && !is_app {
                // The owner owns the table; what it writes is its own business.
                continue;
            }
            let err = conn.batch_execute(sql).await.unwrap_err().to_string();
            assert!(
                err.contains("append-only") || err.contains("permission denied"),
                "{url}: {sql}: {err}"
            );
            if url.contains(tenant_db_tests::APP_ROLE) {
                assert!(err.contains("permission denied"), "{sql}: {err}");
            }
        }
    }
}

/// An error the application returns, shown as its text says.
#[derive(Debug)]
struct AppError(String);
impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError(e.to_string())
    }
}
impl From<diesel::result::Error> for AppError {
    fn from(e: diesel::result::Error) -> Self {
        AppError(e.to_string())
    }
}

/// Reads the tenant's customers in an admin transaction, then ends as `end` says.
async fn read_then(
    db: &TenantDb,
    who: &str,
    tenant: TenantId,
    end: &'static str,
) -> Result<Vec<String>, AppError> {
    db.admin_transaction(&grant(who, tenant), async move |mut tx| {
        let s = tx.scope();
        let names: Vec<String> = s
            .query(customers::table)
            .select(customers::name)
            .load(&mut tx)
            .await?;
        match end {
            "nul" => Err(AppError("user typed \0 here".into())),
            "panic" => panic!("after reading"),
            "sleep" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(names)
            }
            sql => {
                tx.unscoped_execute(diesel::sql_query(sql)).await?;
                Ok(names)
            }
        }
    })
    .await
}

#[tokio::test]
async fn every_admin_access_is_on_the_record_however_its_closure_ends() {
    let db = common::db_with_rls(4).await;
    let (a, _) = common::two_tenants(&db).await;
    // An error text PostgreSQL cannot store: the whole record is kept, the text cleaned.
    let who = actor();
    assert!(read_then(&db, &who, a.id(), "nul").await.is_err());
    let rows = audit_of(&who).await;
    assert_eq!(rows.len(), 3, "{rows:#?}");
    assert_eq!(rows[2].outcome.as_deref(), Some("error: user typed   here"));
    // The transaction ended or spoiled by the closure, a panic, a dropped future: the grant
    // row was committed before anything was read.
    for end in [
        "ROLLBACK",
        "COMMIT",
        "SET TRANSACTION READ ONLY",
        "RELEASE SAVEPOINT tenant_db_admin",
        "panic",
        "sleep",
    ] {
        let who = actor();
        match end {
            "panic" => {
                let (db, who) = (db.clone(), who.clone());
                let joined =
                    tokio::spawn(async move { read_then(&db, &who, a.id(), "panic").await }).await;
                assert!(joined.is_err());
            }
            "sleep" => {
                let timed = tokio::time::timeout(
                    Duration::from_millis(500),
                    read_then(&db, &who, a.id(), "sleep"),
                )
                .await;
                assert!(timed.is_err());
            }
            sql => {
                let _ = read_then(&db, &who, a.id(), sql).await;
            }
        }
        let rows = audit_of(&who).await;
        let granted: Vec<&AuditRow> = rows.iter().filter(|r| r.event == "granted").collect();
        assert_eq!(granted.len(), 1, "{end}: {rows:#?}");
        assert_eq!(granted[0].tenant, a.id().to_string(), "{end}");
        assert_eq!(granted[0].reason, "ticket:SUP-1234", "{end}");
    }
}

#[tokio::test]
async fn an_admin_transaction_cannot_hand_its_tenant_on_in_a_job_envelope() {
    use tenant_db::identity::MasterKey;
    use tenant_db::identity::envelope::{self, EnvelopeError};
    let db = common::db_with_rls(2).await;
    let (a, _) = common::two_tenants(&db).await;
    let master = MasterKey::new(&[7; 32]).unwrap();
    let ttl = Duration::from_secs(365 * 24 * 3600);
    let sealed = db
        .admin_transaction(&grant(&actor(), a.id()), async |tx| {
            Ok::<_, Error>(envelope::seal(&master, &tx.scope(), &"nightly export", ttl))
        })
        .await
        .unwrap();
    assert!(
        matches!(sealed, Err(EnvelopeError::AdminContext)),
        "{sealed:?}"
    );
    // The same call in the tenant's own transaction seals.
    let sealed = db
        .transaction(a, async |tx| {
            Ok::<_, Error>(envelope::seal(&master, &tx.scope(), &"nightly export", ttl))
        })
        .await
        .unwrap();
    assert!(sealed.is_ok());
}

/// An admin transaction counts against the tenant's pool share from its first record on: with
/// a share of one held, it is refused before it writes or holds anything.
#[tokio::test]
async fn an_admin_transaction_stays_within_the_tenants_pool_share() {
    let noisy = keyed::new_tenant();
    let tiers = tenant_db::limits::Tiers::from_json(&format!(
        r#"{{"default_tier": "pro", "tiers": {{
            "free": {{"requests_per_second": 5, "burst": 5, "max_connections": 1}},
            "pro": {{"requests_per_second": 5, "burst": 5, "max_connections": 4}}}},
            "tenants": {{"{}": "free"}}}}"#,
        noisy.id()
    ))
    .unwrap();
    let db = TenantDb::builder(common::app_url().await)
        .max_size(4)
        .tiers(tiers)
        .share_policy(tenant_db::limits::SharePolicy::FailFast)
        .build()
        .unwrap();
    let (hold, held) = tokio::sync::oneshot::channel::<()>();
    let (started, start) = tokio::sync::oneshot::channel::<()>();
    let holder = {
        let db = db.clone();
        tokio::spawn(async move {
            db.transaction(noisy, async |_tx| {
                let _ = started.send(());
                let _ = held.await;
                Ok::<_, Error>(())
            })
            .await
        })
    };
    start.await.unwrap();
    let who = actor();
    let refused = db
        .admin_transaction(&grant(&who, noisy.id()), async |_tx| Ok::<_, Error>(()))
        .await;
    assert!(matches!(refused, Err(Error::Limited(_))), "{refused:?}");
    // Refused before its first record: nothing of it on the record, no connection taken.
    assert!(audit_of(&who).await.is_empty());
    hold.send(()).unwrap();
    holder.await.unwrap().unwrap();
}
