//! Compile time: a generated service crate with 50 tenant tables, written with tenant-db, next
//! to the same crate written with plain diesel-async. Both live in one generated workspace
//! under `target/compile-time-bench` (dependencies built once, shared); each is then rebuilt
//! alone, after touching its source, several times, without incremental compilation; the
//! medians are compared.

use crate::Failure;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const TABLES: usize = 50;

fn table(i: usize, tenant: bool) -> String {
    let derives = if tenant {
        ("tenant_db::TenantTable", ", tenant_db::TenantValues")
    } else {
        ("", "")
    };
    let (row_derive, new_derive) = derives;
    let row_derive = if tenant {
        format!(", {row_derive}")
    } else {
        String::new()
    };
    let tenant_field = if tenant {
        ""
    } else {
        "pub tenant_id: uuid::Uuid, "
    };
    let body = if tenant {
        format!(
            "db.transaction(t, async |mut tx| {{
                let s = tx.scope();
                s.insert(t{i}::table).values(N{i} {{ id: 1, name: \"n\".into(), score: 1 }}).execute(&mut tx).await?;
                s.update(t{i}::table).filter(t{i}::id.eq(1))
                    .set(tenant_db::values!(t{i}::table, t{i}::score = 2_i64)).execute(&mut tx).await?;
                Ok(s.query(t{i}::table).filter(t{i}::score.gt(0)).order(t{i}::id)
                    .select(R{i}::as_select()).load(&mut tx).await?)
            }}).await"
        )
    } else {
        format!(
            "conn.transaction(async |conn| {{
                diesel::sql_query(format!(\"SET LOCAL app.current_tenant = '{{t}}'\")).execute(conn).await?;
                diesel::insert_into(t{i}::table).values(N{i} {{ tenant_id: t, id: 1, name: \"n\".into(), score: 1 }}).execute(conn).await?;
                diesel::update(t{i}::table.filter(t{i}::tenant_id.eq(t)).filter(t{i}::id.eq(1)))
                    .set(t{i}::score.eq(2_i64)).execute(conn).await?;
                t{i}::table.filter(t{i}::tenant_id.eq(t)).filter(t{i}::score.gt(0)).order(t{i}::id)
                    .select(R{i}::as_select()).load(conn).await
            }}).await"
        )
    };
    let signature = if tenant {
        format!(
            "pub async fn use_t{i}(db: &tenant_db::TenantDb, t: tenant_db::Tenant) -> Result<Vec<R{i}>, tenant_db::Error>"
        )
    } else {
        format!(
            "pub async fn use_t{i}(conn: &mut diesel_async::AsyncPgConnection, t: uuid::Uuid) -> diesel::QueryResult<Vec<R{i}>>"
        )
    };
    format!(
        "diesel::table! {{ t{i} (tenant_id, id) {{ tenant_id -> Uuid, id -> BigInt, name -> Text, score -> BigInt, }} }}
#[derive(Debug, diesel::Queryable, diesel::Selectable{row_derive})]
#[diesel(table_name = t{i})]
pub struct R{i} {{ pub tenant_id: uuid::Uuid, pub id: i64, pub name: String, pub score: i64 }}
#[derive(Debug, diesel::Insertable{new_derive})]
#[diesel(table_name = t{i})]
pub struct N{i} {{ {tenant_field}pub id: i64, pub name: String, pub score: i64 }}
{signature} {{
    {body}
}}
"
    )
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn generate(root: &Path, repo: &Path) -> Result<(), Failure> {
    let deps = "diesel = { version = \"2.3\", default-features = false, features = [\"postgres_backend\", \"uuid\"] }
diesel-async = { version = \"0.9\", features = [\"postgres\", \"deadpool\"] }
uuid = \"1\"
";
    write(
        &root.join("Cargo.toml"),
        "[workspace]\nresolver = \"3\"\nmembers = [\"plain\", \"tenant\"]\n",
    )?;
    for (name, tenant) in [("plain", false), ("tenant", true)] {
        let extra = if tenant {
            format!(
                "tenant-db = {{ path = \"{}\" }}\n",
                repo.join("tenant-db").display()
            )
        } else {
            String::new()
        };
        write(
            &root.join(name).join("Cargo.toml"),
            &format!(
                "[package]\nname = \"gen-{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n[dependencies]\n{deps}{extra}"
            ),
        )?;
        let mut src = String::from(
            "#![allow(missing_docs, dead_code)]\nuse diesel::prelude::*;\nuse diesel_async::{AsyncConnection, RunQueryDsl};\n",
        );
        if tenant {
            src = String::from("#![allow(missing_docs, dead_code)]\nuse diesel::prelude::*;\n");
        }
        for i in 0..TABLES {
            src.push_str(&table(i, tenant));
        }
        write(&root.join(name).join("src/lib.rs"), &src)?;
    }
    // Same dependency versions as this repository.
    std::fs::copy(repo.join("Cargo.lock"), root.join("Cargo.lock"))?;
    Ok(())
}

fn cargo_build(root: &Path, package: Option<&str>) -> Result<Duration, Failure> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // Not incremental: each timed build compiles the whole crate, as a clean CI build does.
    cmd.arg("build")
        .arg("--quiet")
        .env("CARGO_INCREMENTAL", "0")
        .current_dir(root);
    if let Some(p) = package {
        cmd.args(["-p", p]);
    }
    let start = Instant::now();
    let status = cmd.status()?;
    let took = start.elapsed();
    if !status.success() {
        return Err(format!("cargo build {package:?} failed in {}", root.display()).into());
    }
    Ok(took)
}

fn touch(path: &Path) -> Result<(), Failure> {
    let text = std::fs::read_to_string(path)?;
    std::fs::write(path, text)?;
    Ok(())
}

/// Generates, builds and reports; returns (plain median, tenant-db median).
pub(crate) fn measure(repo: &Path, rounds: usize) -> Result<(Duration, Duration), Failure> {
    let root: PathBuf = repo.join("target").join("compile-time-bench");
    generate(&root, repo)?;
    eprintln!("building the dependencies once…");
    // Each package alone, as timed below: its own feature set of the dependencies.
    cargo_build(&root, Some("gen-plain"))?;
    cargo_build(&root, Some("gen-tenant"))?;
    let (mut plain, mut tenant) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        for (name, out) in [("plain", &mut plain), ("tenant", &mut tenant)] {
            touch(&root.join(name).join("src/lib.rs"))?;
            let took = cargo_build(&root, Some(&format!("gen-{name}")))?;
            eprintln!("round {round}: gen-{name} {:.1} s", took.as_secs_f64());
            out.push(took);
        }
    }
    plain.sort();
    tenant.sort();
    Ok((plain[plain.len() / 2], tenant[tenant.len() / 2]))
}
