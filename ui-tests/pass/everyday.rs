include!("../schema.rs");
use tenant_db::{Error, Tenant, TenantDb};

// Everyday code compiles without ceremony, and the transaction future is Send
// (borrowed `&str` binds included), so it can be spawned.
async fn handler(db: TenantDb, t: Tenant, name: String) -> Result<Vec<Customer>, Error> {
    db.transaction(t, async |mut tx| {
        let s = tx.scope();
        s.insert(customers::table).values(NewCustomer { id: 1, name: name.clone() }).execute(&mut tx).await?;
        s.insert(customers::table)
            .values(NewCustomer { id: 1, name: name.clone() })
            .on_conflict(customers::id)
            .do_update()
            .set(tenant_db::values!(customers::table, customers::name = tenant_db::excluded(customers::name)))
            .execute(&mut tx)
            .await?;
        s.update(customers::table)
            .filter(customers::id.eq(1))
            .set(tenant_db::values!(customers::table, customers::name = "renamed"))
            .execute(&mut tx)
            .await?;
        let _n: i64 = s.query(customers::table).count().get_result(&mut tx).await?;
        let _c: Vec<String> = s.query(countries::table).select(countries::name).load(&mut tx).await?;
        let _j: Vec<(i64, String)> = s
            .query(orders::table)
            .inner_join(customers::table)
            .select((orders::id, customers::name))
            .load(&mut tx)
            .await?;
        let with_orders = s.query(orders::table).select(orders::customer_id).into_subquery();
        let rows = s
            .query(customers::table)
            .filter(customers::name.eq(name.as_str()))
            .or_filter(customers::id.eq_any(with_orders))
            .select(Customer::as_select())
            .load(&mut tx)
            .await?;
        s.delete(customers::table).filter(customers::id.eq(1)).execute(&mut tx).await?;
        Ok(rows)
    })
    .await
}

fn main() {
    fn assert_send<F: std::future::Future + Send + 'static>(_: F) {}
    let _ = |db: TenantDb, t: Tenant| assert_send(handler(db, t, String::new()));
}
