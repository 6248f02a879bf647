//! The cost of the RLS policy: 1M rows across 100 tenants, indexed per-tenant queries (a
//! 1000-row range and a point read) timed by the server (`EXPLAIN ANALYZE`: planning +
//! execution) with the sealed policy of `tenant_db::rls`, with the unsealed policy it replaced
//! (`current_setting` read directly), with a per-row form, and without RLS (a `BYPASSRLS`
//! role), all interleaved query by query.

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use tenant_db::TENANT_SETTING;
use tenant_db::rls::policy_sql_for;
use tenant_db::seal::begin_sql;
use tenant_db_tests::{APP_ROLE, NO_RLS_ROLE, OWNER_ROLE, admin_url_for, url_for};

use crate::{DATABASE, Failure};

const TENANTS: i64 = 100;
const ROWS_PER_TENANT: i64 = 10_000;

/// Policy cost ratios (server time with the policy / without RLS), planning included and
/// execution alone (what a cached prepared statement pays), on the 1000-row range; the sealed
/// policy against the unsealed one it replaced, on the range and on a point read.
pub(crate) struct Cost {
    pub(crate) policy_ratio: f64,
    pub(crate) per_row_ratio: f64,
    pub(crate) policy_exec_ratio: f64,
    pub(crate) per_row_exec_ratio: f64,
    pub(crate) sealed_vs_unsealed_range: f64,
    pub(crate) sealed_vs_unsealed_point: f64,
    pub(crate) point_policy_ratio: f64,
}

/// The two measured queries.
#[derive(Clone, Copy)]
enum Shape {
    /// 1000 of one tenant's rows, aggregated.
    Range,
    /// One row by key.
    Point,
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

/// Measured query `i` of `shape`.
fn query(shape: Shape, i: i64) -> String {
    let lo = (i * 37) % (ROWS_PER_TENANT - 1000) + 1;
    let t = tenant(i % TENANTS + 1);
    match shape {
        Shape::Range => format!(
            "SELECT count(*), sum(score) FROM big WHERE tenant_id = '{t}' AND id BETWEEN {lo} AND {}",
            lo + 999
        ),
        Shape::Point => format!("SELECT score FROM big WHERE tenant_id = '{t}' AND id = {lo}"),
    }
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

/// Opens a transaction on `conn` for the tenant of query `i`, as tenant-db does (which also
/// sets the unsealed setting the replaced policy reads).
async fn begin(conn: &mut AsyncPgConnection, i: i64) -> Result<(), Failure> {
    let tenant: tenant_db::TenantId = tenant(i % TENANTS + 1).parse()?;
    Ok(conn.batch_execute(&begin_sql(&tenant)).await?)
}

/// Runs query `i` on `conn` in a transaction for its tenant; returns its server times.
async fn one(conn: &mut AsyncPgConnection, shape: Shape, i: i64) -> Result<(f64, f64), Failure> {
    begin(conn, i).await?;
    let t = server_ms(conn, &query(shape, i)).await;
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
    shape: Shape,
    runs: i64,
) -> Result<(Times, Times), Failure> {
    let (mut bt, mut be, mut ot, mut oe) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let (t, e) = one(base, shape, i).await?;
        bt.push(t);
        be.push(e);
        let (t, e) = one(other, shape, i).await?;
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
    let sealed = policy_sql_for("big", "tenant_id", tenant_db::KeyType::Uuid);
    let alter = |expr: &str| {
        format!("ALTER POLICY tenant_db_isolation ON big USING ({expr}) WITH CHECK ({expr})")
    };
    let unsealed = alter(&format!(
        "tenant_id = (SELECT NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid)"
    ));
    let per_row = alter(&format!(
        "tenant_id = NULLIF(current_setting('{TENANT_SETTING}', true), '')::uuid"
    ));
    admin.batch_execute(&sealed).await?;

    let mut with_rls = AsyncPgConnection::establish(&url_for(APP_ROLE, DATABASE)).await?;
    let mut without = AsyncPgConnection::establish(&url_for(NO_RLS_ROLE, DATABASE)).await?;
    // The plan under RLS, for the README: an InitPlan reads the sealed tenant once, and the
    // tenant condition is an index condition.
    begin(&mut with_rls, 0).await?;
    let plan: Vec<PlanLine> =
        diesel::sql_query(format!("EXPLAIN (COSTS OFF) {}", query(Shape::Range, 0)))
            .load(&mut with_rls)
            .await?;
    with_rls.batch_execute("COMMIT").await?;
    println!("\nEXPLAIN under RLS: {}", query(Shape::Range, 0));
    for l in &plan {
        println!("  {}", l.line);
    }

    let runs = if quick { 100 } else { 500 };
    // Warm the caches (the table was perhaps just seeded) before any form is measured.
    for shape in [Shape::Range, Shape::Point] {
        paired(&mut without, &mut with_rls, shape, runs).await?;
    }
    let mut rows = Vec::new();
    // Each policy form against the same baseline, for both shapes; the sealed policy is put
    // back whatever happens.
    let measured = async {
        for (form, sql) in [
            ("sealed (tenant-db)", &sealed),
            ("unsealed (replaced)", &unsealed),
            ("per-row form", &per_row),
        ] {
            admin.batch_execute(sql).await?;
            for (shape, label) in [
                (Shape::Range, "1000-row range"),
                (Shape::Point, "point read"),
            ] {
                paired(&mut without, &mut with_rls, shape, runs / 4).await?;
                let (base, with) = paired(&mut without, &mut with_rls, shape, runs).await?;
                rows.push((form, label, base, with));
            }
        }
        Ok::<_, Failure>(())
    }
    .await;
    admin.batch_execute(&sealed).await?;
    measured?;
    println!("\nRLS policy cost, server time, median of {runs} interleaved runs (ms)");
    println!(
        "  {:<22} {:<16} {:>10} {:>16} {:>16}",
        "policy", "query", "no RLS", "planning+exec", "execution"
    );
    for (form, label, base, t) in &rows {
        println!(
            "  {form:<22} {label:<16} {:>10.3} {:>8.3} ({:.2}x) {:>8.3} ({:.2}x)",
            base.total,
            t.total,
            t.total / base.total,
            t.exec,
            t.exec / base.exec
        );
    }
    let ratio = |form: &str, label: &str| {
        rows.iter()
            .find(|(f, l, _, _)| f.starts_with(form) && l.starts_with(label))
            .map(|(_, _, base, t)| (t.total / base.total, t.exec / base.exec))
            .unwrap_or((f64::NAN, f64::NAN))
    };
    let (sealed_range, sealed_range_exec) = ratio("sealed", "1000");
    let (unsealed_range, _) = ratio("unsealed", "1000");
    let (per_row_range, per_row_range_exec) = ratio("per-row", "1000");
    let (sealed_point, _) = ratio("sealed", "point");
    let (unsealed_point, _) = ratio("unsealed", "point");
    println!(
        "  sealed / unsealed: {:.2}x on the range, {:.2}x on a point read",
        sealed_range / unsealed_range,
        sealed_point / unsealed_point
    );
    Ok(Cost {
        policy_ratio: sealed_range,
        per_row_ratio: per_row_range,
        policy_exec_ratio: sealed_range_exec,
        per_row_exec_ratio: per_row_range_exec,
        sealed_vs_unsealed_range: sealed_range / unsealed_range,
        sealed_vs_unsealed_point: sealed_point / unsealed_point,
        point_policy_ratio: sealed_point,
    })
}
