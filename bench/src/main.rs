//! `tenant-db-bench`: tenant-db scoped access side by side with raw diesel-async, in one
//! process, against the same database with the same pool settings.
//!
//! Raw: diesel-async with a hand-written `tenant_id = $1` filter and no transaction, as a role
//! without RLS (what a service does without tenant-db). Scoped: `TenantDb::transaction` with a
//! scoped query, as the application role under RLS. Scenarios: point read by id, a 100-row
//! page, insert one row, and a transaction of 5 statements (raw: an explicit transaction with
//! `SET LOCAL`). At 1 and 8 concurrent clients; the sides alternate in rounds.
//!
//! Prints a table and, as its last line, one JSON object. `DATABASE_URL` names the server
//! (default: the local one); the benchmark provisions its own database there.

mod airgap;
mod compile_time;
mod pgbench_reference;
mod rls_cost;
mod routing;
mod schema;

use clap::Parser;
use diesel::prelude::*;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use schema::{Item, NewItem, items};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tenant_db::{Error, Tenant, TenantDb, TenantId};
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "tenant-db-bench",
    about = "tenant-db scoped access vs raw diesel-async"
)]
struct Args {
    /// Fewer rounds and operations: finishes in under a minute.
    #[arg(long)]
    quick: bool,
    /// Skip the RLS policy cost measurement (1M rows).
    #[arg(long)]
    skip_rls_cost: bool,
    /// Measure compile time instead: a generated crate with 50 tenant tables, tenant-db vs
    /// plain diesel (takes minutes; builds under target/compile-time-bench).
    #[arg(long)]
    compile_time: bool,
    /// Diagnostic: run the tenant-db side as a BYPASSRLS role, to separate the cost of the
    /// transaction from the cost of RLS.
    #[arg(long)]
    scoped_without_rls: bool,
    /// Measure the placement router instead: a point read through `Router::transaction` vs
    /// `TenantDb::transaction` on the same database.
    #[arg(long)]
    routing: bool,
    /// Measure only the airgap: a quiet tenant's point reads while a noisy tenant floods the
    /// same pool, without and with per-tenant limits.
    #[arg(long)]
    airgap: bool,
}

const DATABASE: &str = "tenant_db_bench";
const TENANTS: u128 = 20;
const ROWS_PER_TENANT: i64 = 1000;

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// The benchmark's tenant `i`: fixed ids, so that the seeded rows are found again on the next
/// run. The benchmark is its own tenant directory, so it vouches for them
/// (`Tenant::assume_verified`).
fn tenant(i: u128) -> Tenant {
    Tenant::assume_verified(
        match TenantId::from_uuid(Uuid::from_u128(
            0xbe0c_0000_0000_4000_8000_0000_0000_0000 + i,
        )) {
            Ok(t) => t,
            Err(_) => TenantId::new_random(),
        },
    )
}

/// Latencies and wall time of one side of one scenario.
#[derive(Default)]
struct Sample {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Sample {
    fn percentile(&self, p: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        let idx = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[idx.min(v.len() - 1)]
    }
    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(f64::EPSILON)
    }
}

/// Runs `op` from `clients` concurrent tasks, `iters` times each; adds to `sample`.
async fn run_clients<F, Fut>(clients: usize, iters: usize, op: F, sample: &mut Sample)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), Failure>> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut lat = Vec::with_capacity(iters);
                for i in 0..iters {
                    let t = Instant::now();
                    op(c, i).await?;
                    lat.push(t.elapsed());
                }
                Ok::<_, Failure>(lat)
            })
        })
        .collect();
    for t in tasks {
        match t.await {
            Ok(Ok(lat)) => sample.latencies.extend(lat),
            Ok(Err(e)) => panic!("operation failed: {e}"),
            Err(e) => panic!("client task failed: {e}"),
        }
    }
    sample.wall += start.elapsed();
}

/// The two sides of the benchmark.
#[derive(Clone)]
struct Sides {
    raw: Pool<AsyncPgConnection>,
    scoped: TenantDb,
    next_id: Arc<AtomicI64>,
    insert_tenant: Tenant,
}

fn id_for(c: usize, i: usize) -> i64 {
    ((c * 7919 + i * 104_729) as i64 % ROWS_PER_TENANT) + 1
}

fn tenant_for(c: usize, i: usize) -> Tenant {
    tenant(((c + i) as u128 % TENANTS) + 1)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    PointRead,
    PageRead,
    Insert,
    Tx5,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::PointRead => "point read",
            Scenario::PageRead => "100-row page",
            Scenario::Insert => "insert one row",
            Scenario::Tx5 => "transaction of 5",
        }
    }
    fn key(self) -> &'static str {
        match self {
            Scenario::PointRead => "point_read",
            Scenario::PageRead => "page_read",
            Scenario::Insert => "insert",
            Scenario::Tx5 => "tx5",
        }
    }
}

/// Both sides must read the row they asked for, of the tenant they asked for.
fn check(item: &Item, tenant: Uuid, id: i64) -> Result<(), Failure> {
    if item.tenant_id == tenant && item.id == id && !item.title.is_empty() && item.score >= 0 {
        Ok(())
    } else {
        Err(format!("wrong row: {item:?} for {tenant}/{id}").into())
    }
}

async fn raw_op(sides: Sides, scenario: Scenario, c: usize, i: usize) -> Result<(), Failure> {
    let t = tenant_for(c, i).id().as_uuid().unwrap_or_default();
    let id = id_for(c, i);
    let mut conn = sides.raw.get().await?;
    match scenario {
        Scenario::PointRead => {
            let item: Item = items::table
                .filter(items::tenant_id.eq(t))
                .filter(items::id.eq(id))
                .select(Item::as_select())
                .first(&mut conn)
                .await?;
            check(&item, t, id)?;
        }
        Scenario::PageRead => {
            let rows: Vec<Item> = items::table
                .filter(items::tenant_id.eq(t))
                .order(items::id)
                .limit(100)
                .offset(id % 900)
                .select(Item::as_select())
                .load(&mut conn)
                .await?;
            assert_eq!(rows.len(), 100);
        }
        Scenario::Insert => {
            let n = sides.next_id.fetch_add(1, Ordering::Relaxed);
            diesel::insert_into(items::table)
                .values((
                    items::tenant_id.eq(sides.insert_tenant.id().as_uuid().unwrap_or_default()),
                    items::id.eq(n),
                    items::title.eq("new"),
                    items::score.eq(1_i64),
                ))
                .execute(&mut conn)
                .await?;
        }
        Scenario::Tx5 => {
            let n = sides.next_id.fetch_add(1, Ordering::Relaxed);
            let it = sides.insert_tenant.id().as_uuid().unwrap_or_default();
            conn.transaction(async |conn| {
                conn.batch_execute(&format!("SET LOCAL app.current_tenant = '{t}'"))
                    .await?;
                let _: Item = items::table
                    .filter(items::tenant_id.eq(t))
                    .filter(items::id.eq(id))
                    .select(Item::as_select())
                    .first(conn)
                    .await?;
                let _: Vec<Item> = items::table
                    .filter(items::tenant_id.eq(t))
                    .order(items::id)
                    .limit(10)
                    .select(Item::as_select())
                    .load(conn)
                    .await?;
                diesel::update(items::table)
                    .filter(items::tenant_id.eq(t))
                    .filter(items::id.eq(id))
                    .set(items::score.eq(items::score + 1))
                    .execute(conn)
                    .await?;
                diesel::insert_into(items::table)
                    .values((
                        items::tenant_id.eq(it),
                        items::id.eq(n),
                        items::title.eq("tx"),
                        items::score.eq(1_i64),
                    ))
                    .execute(conn)
                    .await?;
                let _: i64 = items::table
                    .filter(items::tenant_id.eq(t))
                    .count()
                    .get_result(conn)
                    .await?;
                Ok::<_, diesel::result::Error>(())
            })
            .await?;
        }
    }
    Ok(())
}

async fn scoped_op(sides: Sides, scenario: Scenario, c: usize, i: usize) -> Result<(), Failure> {
    let t = tenant_for(c, i);
    let id = id_for(c, i);
    match scenario {
        Scenario::PointRead => {
            let item: Item = sides
                .scoped
                .single(t, async |mut tx| {
                    let s = tx.scope();
                    Ok::<_, Error>(
                        s.query(items::table)
                            .filter(items::id.eq(id))
                            .select(Item::as_select())
                            .first(&mut tx)
                            .await?,
                    )
                })
                .await?;
            check(&item, t.id().as_uuid().unwrap_or_default(), id)?;
        }
        Scenario::PageRead => {
            let rows: Vec<Item> = sides
                .scoped
                .single(t, async |mut tx| {
                    let s = tx.scope();
                    Ok::<_, Error>(
                        s.query(items::table)
                            .order(items::id)
                            .limit(100)
                            .offset(id % 900)
                            .select(Item::as_select())
                            .load(&mut tx)
                            .await?,
                    )
                })
                .await?;
            assert_eq!(rows.len(), 100);
        }
        Scenario::Insert => {
            let n = sides.next_id.fetch_add(1, Ordering::Relaxed);
            sides
                .scoped
                .single(sides.insert_tenant, async |mut tx| {
                    let s = tx.scope();
                    let row = NewItem {
                        id: n,
                        title: "new".into(),
                        score: 1,
                    };
                    s.insert(items::table).values(row).execute(&mut tx).await?;
                    Ok::<_, Error>(())
                })
                .await?;
        }
        Scenario::Tx5 => {
            let n = sides.next_id.fetch_add(1, Ordering::Relaxed);
            // The same five statements; the insert goes to this transaction's tenant.
            sides
                .scoped
                .transaction(t, async |mut tx| {
                    let s = tx.scope();
                    let _: Item = s
                        .query(items::table)
                        .filter(items::id.eq(id))
                        .select(Item::as_select())
                        .first(&mut tx)
                        .await?;
                    let _: Vec<Item> = s
                        .query(items::table)
                        .order(items::id)
                        .limit(10)
                        .select(Item::as_select())
                        .load(&mut tx)
                        .await?;
                    s.update(items::table)
                        .filter(items::id.eq(id))
                        .set(tenant_db::values!(
                            items::table,
                            items::score = items::score + 1
                        ))
                        .execute(&mut tx)
                        .await?;
                    let row = NewItem {
                        id: n,
                        title: "tx".into(),
                        score: 1,
                    };
                    s.insert(items::table).values(row).execute(&mut tx).await?;
                    let _: i64 = s.query(items::table).count().get_result(tx.last()).await?;
                    Ok::<_, Error>(())
                })
                .await?;
        }
    }
    Ok(())
}

/// One row of the results.
struct Row {
    scenario: Scenario,
    clients: usize,
    raw: Sample,
    scoped: Sample,
}

impl Row {
    fn p50_ratio(&self) -> f64 {
        self.scoped.percentile(0.5).as_secs_f64() / self.raw.percentile(0.5).as_secs_f64()
    }
    fn throughput_ratio(&self) -> f64 {
        self.scoped.throughput() / self.raw.throughput()
    }
}

async fn measure(
    sides: &Sides,
    scenario: Scenario,
    clients: usize,
    rounds: usize,
    iters: usize,
) -> Row {
    let mut raw = Sample::default();
    let mut scoped = Sample::default();
    // A warm-up round per side: pools filled, statements prepared.
    let warm = (iters / 10).max(5);
    let mut scratch = Sample::default();
    let s = sides.clone();
    run_clients(
        clients,
        warm,
        move |c, i| raw_op(s.clone(), scenario, c, i),
        &mut scratch,
    )
    .await;
    let s = sides.clone();
    run_clients(
        clients,
        warm,
        move |c, i| scoped_op(s.clone(), scenario, c, i),
        &mut scratch,
    )
    .await;
    for round in 0..rounds {
        // Alternate which side goes first, so that drift favours neither.
        for side in [round % 2, 1 - round % 2] {
            let s = sides.clone();
            if side == 0 {
                run_clients(
                    clients,
                    iters,
                    move |c, i| raw_op(s.clone(), scenario, c, i),
                    &mut raw,
                )
                .await;
            } else {
                run_clients(
                    clients,
                    iters,
                    move |c, i| scoped_op(s.clone(), scenario, c, i),
                    &mut scoped,
                )
                .await;
            }
        }
    }
    Row {
        scenario,
        clients,
        raw,
        scoped,
    }
}

fn print_airgap(gap: &airgap::Airgap) {
    println!(
        "airgap (a quiet tenant's point reads while a noisy tenant floods the pool): p99 alone \
         {} ms; with the flood {} ms ({:.2}x) without limits, {} ms ({:.2}x) with per-tenant limits",
        ms(gap.alone_p99),
        ms(gap.unfair_p99),
        gap.unfair_ratio(),
        ms(gap.fair_p99),
        gap.fair_ratio()
    );
    println!(
        "limits not hit (the quiet tenant alone, tiers and rate check in place vs none): p50 {:.2}x",
        gap.limits_cost_p50_ratio
    );
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

async fn setup(scoped_without_rls: bool) -> Result<Sides, Failure> {
    let app_url =
        tenant_db_tests::provision(DATABASE, &schema::schema_sql(), &["\"items\""]).await?;
    let raw_url = tenant_db_tests::url_for(tenant_db_tests::NO_RLS_ROLE, DATABASE);
    let scoped_url = if scoped_without_rls {
        raw_url.clone()
    } else {
        app_url
    };
    // Seed as the superuser (RLS would refuse rows for many tenants in one statement).
    let mut admin = AsyncPgConnection::establish(&tenant_db_tests::admin_url_for(DATABASE)).await?;
    let tenants: Vec<String> = (1..=TENANTS).map(|i| format!("'{}'", tenant(i))).collect();
    admin
        .batch_execute(&format!(
            "INSERT INTO items (tenant_id, id, title, score)
             SELECT t::uuid, g, 'item ' || g, g % 97
             FROM unnest(ARRAY[{}]) AS t, generate_series(1, {ROWS_PER_TENANT}) AS g
             ON CONFLICT DO NOTHING;
             DELETE FROM items WHERE id > {ROWS_PER_TENANT};
             INSERT INTO items_unsealed SELECT * FROM items WHERE id <= {ROWS_PER_TENANT}
             ON CONFLICT DO NOTHING;
             ANALYZE items;
             ANALYZE items_unsealed;",
            tenants.join(",")
        ))
        .await?;
    Ok(Sides {
        raw: pool(&raw_url, 8)?,
        scoped: TenantDb::builder(scoped_url).max_size(8).build()?,
        next_id: Arc::new(AtomicI64::new(1_000_000)),
        insert_tenant: Tenant::assume_verified(TenantId::new_random()),
    })
}

/// The raw side's pool: the one `TenantDb` builds, so both sides share pool settings.
fn pool(url: &str, max_size: usize) -> Result<Pool<AsyncPgConnection>, Failure> {
    Ok(TenantDb::builder(url)
        .max_size(max_size)
        .build_unscoped_pool()?)
}

fn main() -> Result<(), Failure> {
    let args = Args::parse();
    if args.compile_time {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let (plain, tenant) = compile_time::measure(&repo, if args.quick { 1 } else { 3 })?;
        println!(
            "compile time, 50 tables, debug build of the crate alone (median): plain diesel \
             {:.1} s, tenant-db {:.1} s",
            plain.as_secs_f64(),
            tenant.as_secs_f64()
        );
        println!(
            "{}",
            serde_json::json!({
                "compile_plain_s": plain.as_secs_f64(),
                "compile_tenant_db_s": tenant.as_secs_f64(),
                "compile_time_ratio": tenant.as_secs_f64() / plain.as_secs_f64(),
            })
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Failure> {
    if args.routing {
        let app_url =
            tenant_db_tests::provision(DATABASE, &schema::schema_sql(), &["\"items\""]).await?;
        setup(false).await?;
        let (p50, tput) = routing::measure(&app_url, args.quick).await?;
        println!(
            "{}",
            serde_json::json!({"routing_point_read_p50_ratio": p50, "routing_throughput_8_ratio": tput})
        );
        return Ok(());
    }
    let sides = setup(args.scoped_without_rls).await?;
    let app_url = tenant_db_tests::url_for(tenant_db_tests::APP_ROLE, DATABASE);
    if args.airgap {
        let gap = airgap::measure(&app_url, args.quick).await?;
        print_airgap(&gap);
        println!(
            "{}",
            serde_json::json!({"airgap_p99_ratio": gap.fair_ratio(), "airgap_unfair_p99_ratio": gap.unfair_ratio(), "limits_cost_p50_ratio": gap.limits_cost_p50_ratio})
        );
        return Ok(());
    }
    let (rounds, iters_1, iters_8) = if args.quick {
        (3, 300, 60)
    } else {
        (6, 1500, 300)
    };
    let mut rows = Vec::new();
    for clients in [1, 8] {
        for scenario in [
            Scenario::PointRead,
            Scenario::PageRead,
            Scenario::Insert,
            Scenario::Tx5,
        ] {
            let iters = if clients == 1 { iters_1 } else { iters_8 };
            let iters = if scenario == Scenario::Tx5 {
                iters / 3
            } else {
                iters
            };
            rows.push(measure(&sides, scenario, clients, rounds, iters).await);
        }
    }
    println!(
        "{:<18} {:>7} | {:>9} {:>9} {:>6} | {:>9} {:>9} | {:>9} {:>9} {:>6}",
        "scenario",
        "clients",
        "raw p50",
        "tdb p50",
        "ratio",
        "raw p99",
        "tdb p99",
        "raw op/s",
        "tdb op/s",
        "ratio"
    );
    println!("{}", "-".repeat(112));
    for r in &rows {
        println!(
            "{:<18} {:>7} | {:>9} {:>9} {:>6.2} | {:>9} {:>9} | {:>9.0} {:>9.0} {:>6.2}",
            r.scenario.name(),
            r.clients,
            ms(r.raw.percentile(0.5)),
            ms(r.scoped.percentile(0.5)),
            r.p50_ratio(),
            ms(r.raw.percentile(0.99)),
            ms(r.scoped.percentile(0.99)),
            r.raw.throughput(),
            r.scoped.throughput(),
            r.throughput_ratio(),
        );
    }
    println!("(latencies in ms; ratio = tenant-db / raw)");
    let mut json = serde_json::Map::new();
    match pgbench_reference::measure(args.quick)? {
        Some(r) => {
            println!(
                "pgbench reference (the limit, same database): a tenant transaction as one \
                 pipelined flight (BEGIN, set_config, the read, COMMIT) vs the raw read: latency \
                 {:.2}x at 1 client, throughput {:.2}x at 8",
                r.latency_1_ratio, r.throughput_8_ratio
            );
            json.insert("pgbench_limit_ratio".into(), r.latency_1_ratio.into());
            json.insert(
                "pgbench_limit_throughput_8_ratio".into(),
                r.throughput_8_ratio.into(),
            );
        }
        None => println!("pgbench reference: skipped (pgbench is not installed)"),
    }
    for r in &rows {
        if r.clients == 1 {
            json.insert(
                format!("{}_p50_ratio", r.scenario.key()),
                r.p50_ratio().into(),
            );
        } else {
            json.insert(
                format!("{}_throughput_8_ratio", r.scenario.key()),
                r.throughput_ratio().into(),
            );
        }
    }
    if let Some(r) = rows
        .iter()
        .find(|r| r.clients == 8 && r.scenario == Scenario::PointRead)
    {
        json.insert("throughput_8_ratio".into(), r.throughput_ratio().into());
    }
    let gap = airgap::measure(&app_url, args.quick).await?;
    print_airgap(&gap);
    json.insert("airgap_p99_ratio".into(), gap.fair_ratio().into());
    json.insert("airgap_unfair_p99_ratio".into(), gap.unfair_ratio().into());
    json.insert(
        "limits_cost_p50_ratio".into(),
        gap.limits_cost_p50_ratio.into(),
    );
    if !args.skip_rls_cost {
        let cost = rls_cost::measure(args.quick).await?;
        json.insert("rls_policy_cost_ratio".into(), cost.policy_ratio.into());
        json.insert(
            "rls_per_row_policy_cost_ratio".into(),
            cost.per_row_ratio.into(),
        );
        json.insert(
            "rls_policy_exec_ratio".into(),
            cost.policy_exec_ratio.into(),
        );
        json.insert(
            "rls_per_row_policy_exec_ratio".into(),
            cost.per_row_exec_ratio.into(),
        );
        json.insert(
            "rls_sealed_vs_unsealed_ratio".into(),
            cost.sealed_vs_unsealed_range.into(),
        );
        json.insert(
            "rls_sealed_vs_unsealed_point_ratio".into(),
            cost.sealed_vs_unsealed_point.into(),
        );
        json.insert(
            "rls_point_policy_cost_ratio".into(),
            cost.point_policy_ratio.into(),
        );
    }
    println!("{}", serde_json::Value::Object(json));
    Ok(())
}
