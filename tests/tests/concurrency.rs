//! Property: K tenants run random operation sequences concurrently on a small pool; every
//! operation sees exactly its tenant's model, no operation ever observes another tenant's row,
//! and afterwards each tenant's rows equal its model. Each case runs as the application role
//! and again as the BYPASSRLS test role.
//!
//! Bounded for CI (16 cases of up to 24 operations per tenant). For a soak, set
//! `TENANT_DB_SOAK=<cases>` (say 2000): cases and sequence lengths grow.

#![allow(clippy::unwrap_used)]

use tenant_db_tests::schema as keyed;
mod common;

use common::*;
use proptest::prelude::*;
use std::collections::BTreeMap;
use tenant_db::prelude::*;
use tenant_db::{Error, TenantDb, excluded, values};
use tenant_db_tests::schema::*;

#[derive(Debug, Clone)]
enum Op {
    Insert(i64, String),
    Upsert(i64, String),
    Rename(i64, String),
    Delete(i64),
    ReadAll,
}

fn op() -> impl Strategy<Value = Op> {
    let id = 0_i64..8;
    let name = "[a-c]{1,3}";
    prop_oneof![
        (id.clone(), name).prop_map(|(i, n)| Op::Insert(i, n)),
        (id.clone(), name).prop_map(|(i, n)| Op::Upsert(i, n)),
        (id.clone(), name).prop_map(|(i, n)| Op::Rename(i, n)),
        id.prop_map(Op::Delete),
        Just(Op::ReadAll),
    ]
}

fn soak() -> Option<u32> {
    std::env::var("TENANT_DB_SOAK")
        .ok()
        .and_then(|v| v.parse().ok())
}

/// Every row the tenant sees, as `(id, name)`, after checking that each is its own.
async fn read_all(db: &TenantDb, tenant: Tenant) -> Result<Vec<(i64, String)>, String> {
    let rows: Vec<Customer> = db
        .transaction(tenant, async |mut tx| {
            let s = tx.scope();
            Ok::<_, Error>(
                s.query(customers::table)
                    .order(customers::id)
                    .load(&mut tx)
                    .await?,
            )
        })
        .await
        .map_err(|e| e.to_string())?;
    if let Some(foreign) = rows.iter().find(|c| c.tenant_id != row_key(&tenant)) {
        return Err(format!("observed a foreign row: {foreign:?}"));
    }
    Ok(rows.into_iter().map(|c| (c.id, c.name)).collect())
}

/// Applies `ops` for `tenant`, each in its own transaction, checking each against the model.
async fn run_tenant(db: TenantDb, tenant: Tenant, ops: Vec<Op>) -> Result<(), String> {
    let mut model: BTreeMap<i64, String> = BTreeMap::new();
    for (step, op) in ops.into_iter().enumerate() {
        let at = |what: String| format!("step {step} {op:?}: {what}");
        match &op {
            Op::Insert(id, name) => {
                let r = db
                    .transaction(tenant, async |mut tx| {
                        let s = tx.scope();
                        let new = NewCustomer {
                            id: *id,
                            name: name.clone(),
                            email: None,
                        };
                        s.insert(customers::table)
                            .values(new)
                            .execute(&mut tx)
                            .await?;
                        Ok::<_, Error>(())
                    })
                    .await;
                // A duplicate key fails (the key is this tenant's own); anything else succeeds.
                if r.is_ok() == model.contains_key(id) {
                    return Err(at(format!("insert returned {r:?}, model {model:?}")));
                }
                model.entry(*id).or_insert_with(|| name.clone());
            }
            Op::Upsert(id, name) => {
                db.transaction(tenant, async |mut tx| {
                    let s = tx.scope();
                    let new = NewCustomer {
                        id: *id,
                        name: name.clone(),
                        email: None,
                    };
                    s.insert(customers::table)
                        .values(new)
                        .on_conflict(customers::id)
                        .do_update()
                        .set(values!(
                            customers::table,
                            customers::name = excluded(customers::name)
                        ))
                        .execute(&mut tx)
                        .await?;
                    Ok::<_, Error>(())
                })
                .await
                .map_err(|e| at(e.to_string()))?;
                model.insert(*id, name.clone());
            }
            Op::Rename(id, name) => {
                let n = db
                    .transaction(tenant, async |mut tx| {
                        let s = tx.scope();
                        Ok::<_, Error>(
                            s.update(customers::table)
                                .filter(customers::id.eq(*id))
                                .set(values!(customers::table, customers::name = name.clone()))
                                .execute(&mut tx)
                                .await?,
                        )
                    })
                    .await
                    .map_err(|e| at(e.to_string()))?;
                let expected = usize::from(model.contains_key(id));
                if n != expected {
                    return Err(at(format!("renamed {n} rows, expected {expected}")));
                }
                if let Some(v) = model.get_mut(id) {
                    v.clone_from(name);
                }
            }
            Op::Delete(id) => {
                let n = db
                    .transaction(tenant, async |mut tx| {
                        let s = tx.scope();
                        Ok::<_, Error>(
                            s.delete(customers::table)
                                .filter(customers::id.eq(*id))
                                .execute(&mut tx)
                                .await?,
                        )
                    })
                    .await
                    .map_err(|e| at(e.to_string()))?;
                let expected = usize::from(model.remove(id).is_some());
                if n != expected {
                    return Err(at(format!("deleted {n} rows, expected {expected}")));
                }
            }
            Op::ReadAll => {
                let seen = read_all(&db, tenant).await.map_err(at)?;
                let want: Vec<(i64, String)> = model.iter().map(|(k, v)| (*k, v.clone())).collect();
                if seen != want {
                    return Err(at(format!("saw {seen:?}, model {want:?}")));
                }
            }
        }
    }
    let seen = read_all(&db, tenant).await?;
    let want: Vec<(i64, String)> = model.into_iter().collect();
    if seen != want {
        return Err(format!("final rows {seen:?}, model {want:?}"));
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: soak().unwrap_or(16),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn concurrent_tenants_match_their_models(
        plans in prop::collection::vec(
            prop::collection::vec(op(), 1..if soak().is_some() { 80 } else { 24 }),
            3..=4,
        )
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let outcome: Result<(), String> = rt.block_on(async move {
            // As the application role (both layers), then as the BYPASSRLS test role (the
            // compile-time layer alone, so RLS cannot hide its mistakes). A pool smaller than
            // the number of tenants, so connections change hands.
            let with_rls = app_url().await;
            let without_rls = tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DATABASE);
            for url in [with_rls, without_rls] {
                let db = TenantDb::connect(&url, 2).unwrap();
                let tasks: Vec<_> = plans
                    .iter()
                    .cloned()
                    .map(|ops| tokio::spawn(run_tenant(db.clone(), new_tenant(), ops)))
                    .collect();
                for task in tasks {
                    task.await.map_err(|e| e.to_string())?.map_err(|e| format!("{url}: {e}"))?;
                }
            }
            Ok(())
        });
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
    }
}
