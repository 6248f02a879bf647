//! tenant-db in one screen: provisions a database with an owner role and an application role,
//! runs the migrations with row-level security applied to every registered tenant table, seeds
//! two tenants with the same ids, and shows that each tenant sees only its rows, and that a
//! cross-tenant attempt finds and changes nothing.
//!
//! Run: `cargo run -p tenant-db-examples --example quickstart`
//! (`TENANT_DB_ADMIN_URL` overrides the default `postgres://postgres@127.0.0.1:5432/postgres`).

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use tenant_db::prelude::*;
use tenant_db::provision::Provision;
use tenant_db::registry::Registry;
use tenant_db::{Error, Tenant, values};

mod schema {
    #![allow(missing_docs)]
    diesel::table! {
        customers (tenant_id, id) {
            tenant_id -> Uuid,
            id -> BigInt,
            name -> Text,
            plan_code -> Text,
        }
    }

    diesel::table! {
        plans (code) {
            code -> Text,
            name -> Text,
        }
    }
}
use schema::*;

/// A customer: rows belong to a tenant.
#[derive(diesel::Queryable, diesel::Selectable, TenantTable)]
#[diesel(table_name = customers)]
#[allow(dead_code)]
struct Customer {
    tenant_id: uuid::Uuid,
    id: i64,
    name: String,
    plan_code: String,
}

/// A new customer: no tenant column, tenant-db fills it from the scope.
#[derive(TenantValues)]
#[diesel(table_name = customers)]
struct NewCustomer {
    id: i64,
    name: String,
    plan_code: String,
}

/// A plan: shared reference data.
#[derive(diesel::Queryable, diesel::Selectable, GlobalTable)]
#[diesel(table_name = plans)]
#[allow(dead_code)]
struct Plan {
    code: String,
    name: String,
}

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // 1. Set-up (idempotent): roles and database, then the migrations as the owner, with RLS
    //    and grants for every table this binary's models registered.
    let urls = Provision::new("tenant_db_quickstart", "quickstart_owner", "quickstart_app")
        .run(&tenant_db_tests::admin_url())
        .await?;
    let registry = Registry::collected_under(module_path!())?;
    tenant_db_migrate::run(&urls, MIGRATIONS, &registry).await?;
    let app_url = urls.app_url;
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
                    plan_code: "free".into(),
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
                plan_code: "pro".into(),
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
