//! The cost of the RLS policy: 1M rows across 100 tenants, an indexed per-tenant query timed
//! by the server (`EXPLAIN ANALYZE`: planning + execution) with the policy of `tenant_db::rls`,
//! with a per-row policy form instead, and without RLS (a `BYPASSRLS` role).

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenant_db::TENANT_SETTING;
use tenant_db::rls::{policy_sql_for, quote_literal};
use tenant_db_tests::{APP_ROLE, NO_RLS_ROLE, OWNER_ROLE, admin_url_for, url_for};

use crate::{DATABASE, Failure};

const TENANTS: i64 = 100;
const ROWS_PER_TENANT: i64 = 10_000;

/// Policy cost ratios (server time with the policy / without RLS), planning included and
/// execution alone (what a cached prepared statement pays).
pub(crate) struct Cost {
    pub(crate) policy_ratio: f64,
    pub(crate) per_row_ratio: f64,
    pub(crate) policy_exec_ratio: f64,
    pub(crate) per_row_exec_ratio: f64,
}

/// Median server times in milliseconds: (planning + execution, execution).
#[derive(Clone, Copy)]
struct Times {
    total: f64,
    exec: f64,
}

#[derive(diesel::QueryableByName)]
struct PlanLine {
    #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
    line: String,
}

fn tenant(i: i64) -> String {
    format!("00000000-0000-4000-8000-{:012x}", 0xb16_0000 + i)
}

/// The measured query: an index range scan of 1000 of one tenant's rows, aggregated.
fn query(i: i64) -> String {
    let lo = (i * 37) % (ROWS_PER_TENANT - 1000) + 1;
    format!(
        "SELECT count(*), sum(score) FROM big WHERE tenant_id = '{}' AND id BETWEEN {lo} AND {}",
        tenant(i % TENANTS + 1),
        lo + 999
    )
}

/// (planning + execution, execution) in milliseconds, from `EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)` (per-node timing would charge the policy's extra plan node for every row it passes).
async fn server_ms(conn: &mut AsyncPgConnection, sql: &str) -> Result<(f64, f64), Failure> {
    let lines: Vec<PlanLine> =
        diesel::sql_query(format!("EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"))
            .load(conn)
            .await?;
    let text: String = lines.into_iter().map(|l| l.line).collect();
    let doc: serde_json::Value = serde_json::from_str(&text)?;
    let get = |k: &str| doc[0][k].as_f64().unwrap_or(0.0);
    Ok((
        get("Planning Time") + get("Execution Time"),
        get("Execution Time"),
    ))
}

/// Opens a transaction on `conn` for the tenant of query `i`.
async fn begin(conn: &mut AsyncPgConnection, i: i64) -> Result<(), Failure> {
    let tenant = quote_literal(&tenant(i % TENANTS + 1));
    Ok(conn
        .batch_execute(&format!(
            "BEGIN; SELECT set_config('{TENANT_SETTING}', {tenant}, true)"
        ))
        .await?)
}

/// Runs query `i` on `conn` in a transaction for its tenant; returns its server times.
async fn one(conn: &mut AsyncPgConnection, i: i64) -> Result<(f64, f64), Failure> {
    begin(conn, i).await?;
    let t = server_ms(conn, &query(i)).await;
    conn.batch_execute("COMMIT").await?;
    t
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median server times of `runs` queries on each connection, the two interleaved query by
/// query so that machine noise hits both alike.
async fn paired(
    base: &mut AsyncPgConnection,
    other: &mut AsyncPgConnection,
    runs: i64,
) -> Result<(Times, Times), Failure> {
    let (mut bt, mut be, mut ot, mut oe) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (t, e) = one(base, i).await?;
        bt.push(t);
        be.push(e);
        let (t, e) = one(other, i).await?;
        ot.push(t);
        oe.push(e);
    }
    let times = |t, e| Times {
        total: median(t),
        exec: median(e),
    };
    Ok((times(bt, be), times(ot, oe)))
}

pub(crate) async fn measure(quick: bool) -> Result<Cost, Failure> {
    let mut admin = AsyncPgConnection::establish(&admin_url_for(DATABASE)).await?;
    admin
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS big (tenant_id uuid NOT NULL, id bigint NOT NULL,
                 score bigint NOT NULL, PRIMARY KEY (tenant_id, id));
             ALTER TABLE big OWNER TO {OWNER_ROLE};
             GRANT SELECT ON big TO {APP_ROLE}, {NO_RLS_ROLE};"
        ))
        .await?;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let have: N = diesel::sql_query("SELECT count(*) AS n FROM big")
        .get_result(&mut admin)
        .await?;
    if have.n < TENANTS * ROWS_PER_TENANT {
        eprintln!("seeding 1M rows for the RLS cost (once)…");
        admin
            .batch_execute(&format!(
                "INSERT INTO big SELECT ('00000000-0000-4000-8000-' || lpad(to_hex({} + t), 12, '0'))::uuid,
                        g, (g * 7919) % 1000
                 FROM generate_series(1, {TENANTS}) t, generate_series(1, {ROWS_PER_TENANT}) g
                 ON CONFLICT DO NOTHING;",
                0xb16_0000_i64
            ))
            .await?;
        admin.batch_execute("VACUUM ANALYZE big").await?;
    }
    let sound = policy_sql_for("big", "tenant_id");
    let per_row_expr =
        format!("tenant_id = NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid");
    let per_row = format!(
        "ALTER POLICY tenant_db_isolation ON big USING ({per_row_expr}) WITH CHECK ({per_row_expr})"
    );
    admin.batch_execute(&sound).await?;

    let mut with_rls = AsyncPgConnection::establish(&url_for(APP_ROLE, DATABASE)).await?;
    let mut without = AsyncPgConnection::establish(&url_for(NO_RLS_ROLE, DATABASE)).await?;
    // The plan under RLS, for the README: an InitPlan reads the setting once, and the
    // tenant condition is an index condition.
    begin(&mut with_rls, 0).await?;
    let plan: Vec<PlanLine> = diesel::sql_query(format!("EXPLAIN (COSTS OFF) {}", query(0)))
        .load(&mut with_rls)
        .await?;
    with_rls.batch_execute("COMMIT").await?;
    println!("\nEXPLAIN under RLS: {}", query(0));
    for l in &plan {
        println!("  {}", l.line);
    }

    let runs = if quick { 100 } else { 500 };
    // Warm both sides, then measure each policy form against the same baseline.
    paired(&mut without, &mut with_rls, runs / 2).await?;
    let (base, policy) = paired(&mut without, &mut with_rls, runs).await?;
    admin.batch_execute(&per_row).await?;
    let per_row_result = paired(&mut without, &mut with_rls, runs).await;
    admin.batch_execute(&sound).await?;
    let (base_b, per_row_ms) = per_row_result?;
    println!("\nRLS policy cost, server time, median of {runs} interleaved runs (ms)");
    println!("  {:<26} {:>16} {:>16}", "", "planning+exec", "execution");
    for (name, t, b) in [
        ("without RLS", base, base),
        ("tenant-db policy", policy, base),
        ("without RLS (again)", base_b, base_b),
        ("per-row policy form", per_row_ms, base_b),
    ] {
        println!(
            "  {name:<26} {:>8.3} ({:.2}x) {:>8.3} ({:.2}x)",
            t.total,
            t.total / b.total,
            t.exec,
            t.exec / b.exec
        );
    }
    Ok(Cost {
        policy_ratio: policy.total / base.total,
        per_row_ratio: per_row_ms.total / base_b.total,
        policy_exec_ratio: policy.exec / base.exec,
        per_row_exec_ratio: per_row_ms.exec / base_b.exec,
    })
}
