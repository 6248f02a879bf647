//! Per-binary set-up: the provisioned database and a fresh pair of tenants per test.
#![allow(dead_code, unreachable_pub, missing_docs)]

use tenant_db::{TenantDb, TenantId};
use tenant_db_tests::schema::*;

pub const DATABASE: &str = "tenant_db_test";

pub async fn app_url() -> String {
    match tenant_db_tests::provision(DATABASE, &schema_sql()).await {
        Ok(url) => url,
        Err(e) => panic!("database set-up failed: {e}"),
    }
}

pub async fn db(max_size: usize) -> TenantDb {
    TenantDb::connect(&app_url().await, max_size).expect("pool")
}

/// Seeds the same ids and names for a tenant: customers 1..=3, orders 10, 11 (customer 1) and
/// 12 (customer 2); customer 3 has no orders.
pub async fn seed(db: &TenantDb, tenant: TenantId, tag: &str) {
    db.transaction(tenant, async |mut tx| {
        let s = tx.scope();
        let customers: Vec<NewCustomer> = (1..=3)
            .map(|id| NewCustomer {
                id,
                name: format!("c{id}"),
                email: Some(format!("{tag}{id}@x")),
            })
            .collect();
        s.insert(customers::table)
            .values(customers)
            .execute(&mut tx)
            .await?;
        let orders = vec![
            NewOrder {
                id: 10,
                customer_id: 1,
                total_cents: 100,
                country_code: "FR".into(),
            },
            NewOrder {
                id: 11,
                customer_id: 1,
                total_cents: 250,
                country_code: "JP".into(),
            },
            NewOrder {
                id: 12,
                customer_id: 2,
                total_cents: 400,
                country_code: "FR".into(),
            },
        ];
        s.insert(orders::table)
            .values(orders)
            .execute(&mut tx)
            .await?;
        Ok::<_, tenant_db::Error>(())
    })
    .await
    .expect("seed");
}

/// Two fresh tenants with identical ids and values.
pub async fn two_tenants(db: &TenantDb) -> (TenantId, TenantId) {
    let a = TenantId::new_random();
    let b = TenantId::new_random();
    seed(db, a, "a").await;
    seed(db, b, "b").await;
    (a, b)
}
