//! Rotating the secret name (`seal::rotate_sql`): a leaked name switches the tenant until the
//! owner rotates it, and not after; tenant-db's own transactions go on working; a transaction
//! open across the rotation loses its tenant (sees nothing, writes nothing) rather than keeping
//! or mixing one.
//!
//! In a binary of its own: a rotation changes the name for every connection to the database,
//! and each test binary has a database of its own (see `tenant_db_tests::fresh`). Its two tests
//! each read the name, then rotate it; they run one at a time (see `ONE_ROTATION`).

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use diesel::sql_types::Text;
use diesel_async::RunQueryDsl as _;
use tenant_db::Error;
use tenant_db::prelude::*;
use tenant_db_tests::schema::*;

/// The secret setting's name for UUID tenants, as only the owner can read it.
async fn secret_name(owner: &mut diesel_async::AsyncPgConnection) -> String {
    let seen: Seen = diesel::sql_query(
        "SELECT 'tenant_db.s' || pg_sequence_last_value('tenant_db.seal_name') || '_uuid' \
         AS tenant",
    )
    .get_result(owner)
    .await
    .unwrap();
    seen.tenant
}

/// Sets the setting `name` to `value` for the rest of `tx`, through the escape hatch (what
/// code that learned a secret name could run).
async fn set_config(
    tx: &mut tenant_db::TenantTx<'_>,
    name: &str,
    value: &str,
) -> Result<(), Error> {
    tx.unscoped_load::<_, Seen>(
        diesel::sql_query("SELECT set_config($1, $2, true) AS tenant")
            .bind::<Text, _>(name)
            .bind::<Text, _>(value),
    )
    .await?;
    Ok(())
}

/// What a transaction of `a` sees after setting `name` to `b` through the escape hatch.
async fn forged(
    db: &tenant_db::TenantDb,
    a: tenant_db::Tenant,
    b: tenant_db::Tenant,
    name: &str,
) -> Vec<String> {
    db.transaction(a, async |mut tx| {
        set_config(&mut tx, name, &b.to_string()).await?;
        visible(&mut tx).await
    })
    .await
    .unwrap()
}

/// Held by each test for its whole run: a rotation by one would break the other's reading.
static ONE_ROTATION: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What `tenant_db.current_tenant(kind)` says in a transaction of `a` after setting `name` (a
/// secret name of key kind `kind`) to `value` through the escape hatch.
async fn forged_kind(
    db: &tenant_db::TenantDb,
    a: tenant_db::Tenant,
    name: &str,
    kind: &str,
    value: &str,
) -> Option<String> {
    #[derive(diesel::QueryableByName)]
    struct Current {
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        current: Option<String>,
    }
    db.transaction(a, async |mut tx| {
        set_config(&mut tx, name, value).await?;
        let current: Vec<Current> = tx
            .unscoped_load(
                diesel::sql_query("SELECT tenant_db.current_tenant($1) AS current")
                    .bind::<Text, _>(kind),
            )
            .await?;
        Ok::<_, Error>(current.into_iter().next().and_then(|c| c.current))
    })
    .await
    .unwrap()
}

/// The other key kinds' secret names come from the same sequence: a leaked one is dead after
/// a rotation too.
#[tokio::test]
async fn a_rotated_name_of_every_key_kind_no_longer_sets_a_tenant() {
    let _one = ONE_ROTATION.lock().await;
    let db = db_with_rls(2).await;
    let a = new_tenant();
    let mut owner = owner().await;
    let leaked = secret_name(&mut owner).await;
    let base = leaked.strip_suffix("_uuid").unwrap().to_string();
    let cases = [("int", "42"), ("text", "acme")];
    for (kind, value) in cases {
        assert_eq!(
            forged_kind(&db, a, &format!("{base}_{kind}"), kind, value)
                .await
                .as_deref(),
            Some(value),
            "the leaked {kind} name did not set a tenant: this test is not testing the seal"
        );
    }
    diesel_async::SimpleAsyncConnection::batch_execute(&mut owner, &tenant_db::seal::rotate_sql())
        .await
        .unwrap();
    for (kind, value) in cases {
        assert_eq!(
            forged_kind(&db, a, &format!("{base}_{kind}"), kind, value).await,
            None,
            "the old {kind} name still sets a tenant"
        );
    }
}

#[tokio::test]
async fn a_rotated_name_no_longer_switches_the_tenant() {
    let _one = ONE_ROTATION.lock().await;
    let db = db_with_rls(2).await;
    let (a, b) = two_tenants(&db).await;
    let mut owner = owner().await;
    let leaked = secret_name(&mut owner).await;

    // The leak is real: with the name, a statement switches the tenant RLS enforces.
    assert_eq!(
        forged(&db, a, b, &leaked).await,
        vec![b.to_string()],
        "the leaked name did not switch the tenant: this test is not testing the seal"
    );

    // A transaction open across the rotation.
    let (opened_tx, opened_rx) = tokio::sync::oneshot::channel::<()>();
    let (rotated_tx, rotated_rx) = tokio::sync::oneshot::channel::<()>();
    let across = {
        let db = db.clone();
        tokio::spawn(async move {
            let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
            let record = seen.clone();
            // The write fails, so the transaction's own outcome is an error too.
            let _ = db
                .transaction(a, async |mut tx| {
                    let before = visible(&mut tx).await?;
                    let _ = opened_tx.send(());
                    let _ = rotated_rx.await;
                    let after = visible(&mut tx).await?;
                    let s = tx.scope();
                    let write = s
                        .insert(customers::table)
                        .values(keyed::NewCustomer {
                            id: 99,
                            name: "after rotation".into(),
                            email: None,
                        })
                        .execute(&mut tx)
                        .await;
                    *record.lock().unwrap() = Some((before, after, write.is_err()));
                    write?;
                    Ok::<_, Error>(())
                })
                .await;
            seen.lock().unwrap().take()
        })
    };
    opened_rx.await.unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(&mut owner, &tenant_db::seal::rotate_sql())
        .await
        .unwrap();
    let _ = rotated_tx.send(());
    let (before, after, write_failed) = across.await.unwrap().unwrap();
    assert_eq!(before, vec![a.to_string()]);
    assert_eq!(
        after,
        Vec::<String>::new(),
        "an open transaction kept a tenant"
    );
    assert!(write_failed, "an open transaction wrote after the rotation");

    let rotated = secret_name(&mut owner).await;
    assert_ne!(rotated, leaked, "rotate_sql did not change the name");
    assert_eq!(
        forged(&db, a, b, &leaked).await,
        vec![a.to_string()],
        "the old name still switches the tenant"
    );
    let own = db
        .transaction(a, async |mut tx| visible(&mut tx).await)
        .await
        .unwrap();
    assert_eq!(own, vec![a.to_string()], "tenant-db's transactions broke");
    let written: Vec<i64> = db
        .transaction(a, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .filter(customers::id.eq(99))
                    .select(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .unwrap();
    assert!(written.is_empty(), "the write after the rotation was kept");
}
