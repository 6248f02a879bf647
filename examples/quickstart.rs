//! tenant-db in one screen: provisions a database with an owner role, an application role,
//! tables with row-level security; seeds two tenants with the same ids; shows that each tenant
//! sees only its rows, and that a cross-tenant attempt finds and changes nothing.
//!
//! Run: `cargo run -p tenant-db-examples --example quickstart`
//! (`TENANT_DB_ADMIN_URL` overrides the default `postgres://postgres@127.0.0.1:5432/postgres`).

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use tenant_db::prelude::*;
use tenant_db::{Error, Tenant, values};
use tenant_db_tests::schema::*;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Set-up: database, roles, schema and RLS (idempotent).
    let app_url =
        tenant_db_tests::provision("tenant_db_quickstart", &schema_sql(), TENANT_TABLES).await?;
    println!("connected as the application role: {app_url}");
    let db = TenantDb::connect(&app_url, 4)?;

    // 2. Two tenants, same customer ids and names.
    // A service gets a `Tenant` from its token verifier; this example provisions the tenants
    // itself, as a tenant directory would, so it vouches for them with the escape hatch.
    let acme = Tenant::assume_verified(TenantId::new_random());
    let globex = Tenant::assume_verified(TenantId::new_random());
    for (tenant, label) in [(acme, "acme"), (globex, "globex")] {
        db.transaction(tenant, async |mut tx| {
            let s = tx.scope();
            s.delete(customers::table).execute(&mut tx).await?;
            let rows: Vec<NewCustomer> = (1..=2)
                .map(|id| NewCustomer {
                    id,
                    name: format!("{label} customer {id}"),
                    email: None,
                })
                .collect();
            s.insert(customers::table)
                .values(rows)
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>(())
        })
        .await?;
    }
    println!("seeded tenants acme={acme} and globex={globex}, both with customers 1 and 2");

    // 3. Each tenant sees only its own rows: the query names no tenant.
    for (tenant, label) in [(acme, "acme"), (globex, "globex")] {
        let names: Vec<String> = db
            .transaction(tenant, async |mut tx| {
                let s = tx.scope();
                Ok::<_, Error>(
                    s.query(customers::table)
                        .select(customers::name)
                        .order(customers::id)
                        .load(&mut tx)
                        .await?,
                )
            })
            .await?;
        println!("{label:>6} sees: {names:?}");
    }

    // 4. A cross-tenant attempt: acme adds a row only globex has, then acme looks it up and
    //    tries to rename and delete it by id.
    db.transaction(globex, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table)
            .values(NewCustomer {
                id: 42,
                name: "globex secret".into(),
                email: None,
            })
            .execute(&mut tx)
            .await?;
        Ok::<_, Error>(())
    })
    .await?;
    let (found, renamed, deleted) = db
        .transaction(acme, async |mut tx| {
            let s = tx.scope();
            let found: Option<String> = s
                .query(customers::table)
                .filter(customers::id.eq(42))
                .select(customers::name)
                .first(&mut tx)
                .await
                .optional()?;
            let renamed = s
                .update(customers::table)
                .filter(customers::id.eq(42))
                .set(values!(customers::table, customers::name = "pwned"))
                .execute(&mut tx)
                .await?;
            let deleted = s
                .delete(customers::table)
                .filter(customers::id.eq(42))
                .execute(&mut tx)
                .await?;
            Ok::<_, Error>((found, renamed, deleted))
        })
        .await?;
    println!(
        "acme looks up globex's customer 42: {found:?}; rows renamed: {renamed}; rows deleted: {deleted}"
    );

    // 5. Raw SQL as the application role, outside tenant-db and with no tenant set: RLS shows nothing.
    let mut raw = AsyncPgConnection::establish(&app_url).await?;
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let c: Count = diesel::sql_query("SELECT count(*) AS n FROM customers")
        .get_result(&mut raw)
        .await?;
    println!("raw SQL with no tenant set sees {} customer rows", c.n);

    let ok = found.is_none() && renamed == 0 && deleted == 0 && c.n == 0;
    println!(
        "{}",
        if ok {
            "isolation holds"
        } else {
            "ISOLATION BROKEN"
        }
    );
    if ok {
        Ok(())
    } else {
        Err("isolation broken".into())
    }
}
