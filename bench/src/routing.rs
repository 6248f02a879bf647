//! `--routing`: the cost of a [`Router`] in front of the pool: a point read through
//! `Router::transaction` (directory entry cached, pool of the tenant's server) side by side
//! with the same read through `TenantDb::transaction` on the same database, in alternating
//! rounds.

use crate::schema::{Item, items};
use crate::{DATABASE, Failure, Sample, TENANTS, id_for, run_clients, tenant, tenant_for};
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use tenant_db::placement::{Directory, Placement, Router};
use tenant_db::provision::Provision;
use tenant_db::{Error, Tenant, TenantDb};

async fn point_read(
    tenant: Tenant,
    id: i64,
    run: impl AsyncFnOnce(Tenant, i64) -> Result<Item, Error>,
) -> Result<(), Failure> {
    let item = run(tenant, id).await?;
    if item.id != id || Some(item.tenant_id) != tenant.id().as_uuid() {
        return Err(format!("wrong row {item:?}").into());
    }
    Ok(())
}

/// Prints the table and returns `(p50 ratio at 1 client, throughput ratio at 8 clients)`.
pub(crate) async fn measure(app_url: &str, quick: bool) -> Result<(f64, f64), Failure> {
    let control = Provision::new(
        &format!("{DATABASE}_control"),
        tenant_db_tests::OWNER_ROLE,
        tenant_db_tests::APP_ROLE,
    )
    .run(&tenant_db_tests::admin_url())
    .await?;
    let mut owner = AsyncPgConnection::establish(&control.owner_url).await?;
    let directory_sql = tenant_db::placement::directory::setup_sql(tenant_db_tests::APP_ROLE)
        .map_err(tenant_db::Error::from)?;
    owner.batch_execute(&directory_sql).await?;
    let directory = Directory::connect(&control.owner_url, 1)?;
    let local: Placement = "pool:local".parse()?;
    for i in 1..=TENANTS {
        directory.set(&tenant(i).id(), &local).await?;
    }
    let db = TenantDb::builder(app_url).max_size(8).build()?;
    let router = Router::builder(&control.app_url)
        .server("local", app_url)
        .pool_size(8)
        .build()?;
    let (rounds, iters_1, iters_8) = if quick { (3, 300, 60) } else { (6, 1500, 300) };
    println!("routing: a point read through the router vs the pool it routes to");
    println!(
        "{:>7} | {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6}",
        "clients", "pool p50", "router", "ratio", "pool op/s", "router", "ratio"
    );
    let mut ratios = (0.0, 0.0);
    for clients in [1usize, 8] {
        let iters = if clients == 1 { iters_1 } else { iters_8 };
        let mut direct = Sample::default();
        let mut routed = Sample::default();
        let mut scratch = Sample::default();
        for round in 0..=rounds {
            for side in [round % 2, 1 - round % 2] {
                // Round 0 warms both sides up (pools filled, statements prepared, entries cached).
                let sample = match (round, side) {
                    (0, _) => &mut scratch,
                    (_, 0) => &mut direct,
                    _ => &mut routed,
                };
                if side == 0 {
                    let db = db.clone();
                    run_clients(
                        clients,
                        iters,
                        move |c, i| {
                            let db = db.clone();
                            async move {
                                point_read(tenant_for(c, i), id_for(c, i), async |t, id| {
                                    db.transaction(t, async |mut tx| {
                                        let s = tx.scope();
                                        Ok::<_, Error>(
                                            s.query(items::table)
                                                .filter(items::id.eq(id))
                                                .select(Item::as_select())
                                                .first(&mut tx)
                                                .await?,
                                        )
                                    })
                                    .await
                                })
                                .await
                            }
                        },
                        sample,
                    )
                    .await;
                } else {
                    let router = router.clone();
                    run_clients(
                        clients,
                        iters,
                        move |c, i| {
                            let router = router.clone();
                            async move {
                                point_read(tenant_for(c, i), id_for(c, i), async |t, id| {
                                    router
                                        .transaction(t, async |mut tx| {
                                            let s = tx.scope();
                                            Ok::<_, Error>(
                                                s.query(items::table)
                                                    .filter(items::id.eq(id))
                                                    .select(Item::as_select())
                                                    .first(&mut tx)
                                                    .await?,
                                            )
                                        })
                                        .await
                                })
                                .await
                            }
                        },
                        sample,
                    )
                    .await;
                }
            }
        }
        let p50 = routed.percentile(0.5).as_secs_f64() / direct.percentile(0.5).as_secs_f64();
        let tput = routed.throughput() / direct.throughput();
        println!(
            "{clients:>7} | {:>9} {:>9} {p50:>6.2} | {:>9.0} {:>9.0} {tput:>6.2}",
            crate::ms(direct.percentile(0.5)),
            crate::ms(routed.percentile(0.5)),
            direct.throughput(),
            routed.throughput(),
        );
        if clients == 1 {
            ratios.0 = p50;
        } else {
            ratios.1 = tput;
        }
    }
    Ok(ratios)
}
