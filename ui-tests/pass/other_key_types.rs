// Tenant tables keyed by bigint and by text: the derive reads the field's type, and scoped
// queries, inserts, updates and joins compile as on a uuid-keyed table.
use diesel::prelude::*;
use tenant_db::prelude::*;
use tenant_db::{Error, Tenant, TenantDb, TenantId};

diesel::table! { ledgers (id) { account_id -> BigInt, id -> BigInt, memo -> Text, } }
diesel::table! { entries (id) { account_id -> BigInt, id -> BigInt, ledger_id -> BigInt, } }
diesel::table! { workspaces (org_slug, id) { org_slug -> Text, id -> Integer, title -> Text, } }
diesel::table! { seats (org_id, id) { org_id -> Integer, id -> BigInt, } }
diesel::joinable!(entries -> ledgers (ledger_id));
diesel::allow_tables_to_appear_in_same_query!(ledgers, entries);

#[derive(Queryable, Selectable, tenant_db::TenantTable)]
#[diesel(table_name = ledgers)]
#[tenant(column = account_id)]
#[allow(dead_code)]
pub struct Ledger { pub account_id: i64, pub id: i64, pub memo: String }

#[derive(Queryable, Selectable, tenant_db::TenantTable)]
#[diesel(table_name = entries)]
#[tenant(column = account_id)]
#[allow(dead_code)]
pub struct Entry { pub account_id: i64, pub id: i64, pub ledger_id: i64 }

#[derive(Queryable, Selectable, tenant_db::TenantTable)]
#[diesel(table_name = workspaces)]
#[tenant(column = org_slug)]
#[allow(dead_code)]
pub struct Workspace { pub org_slug: String, pub id: i32, pub title: String }

#[derive(Queryable, Selectable, tenant_db::TenantTable)]
#[diesel(table_name = seats)]
#[tenant(column = org_id)]
#[allow(dead_code)]
pub struct Seat { pub org_id: i32, pub id: i64 }

#[derive(Insertable, tenant_db::TenantValues)]
#[diesel(table_name = ledgers)]
pub struct NewLedger { pub id: i64, pub memo: String }

async fn accounts(db: TenantDb) -> Result<(), Error> {
    let account = Tenant::assume_verified(TenantId::parse_int("4711")?);
    db.transaction(account, async |mut tx| {
        let s = tx.scope();
        s.insert(ledgers::table).values(NewLedger { id: 1, memo: "m".into() }).execute(&mut tx).await?;
        s.update(ledgers::table)
            .filter(ledgers::id.eq(1))
            .set(tenant_db::values!(ledgers::table, ledgers::memo = "n"))
            .execute(&mut tx)
            .await?;
        let _j: Vec<(i64, String)> = s
            .query(entries::table)
            .inner_join(ledgers::table)
            .select((entries::id, ledgers::memo))
            .load(&mut tx)
            .await?;
        let _n: i64 = s.query(seats::table).count().get_result(&mut tx).await?;
        Ok::<_, Error>(())
    })
    .await?;
    let org = Tenant::assume_verified(TenantId::parse_text("acme-eu")?);
    db.transaction(org, async |mut tx| {
        let s = tx.scope();
        let _w: Vec<Workspace> = s.query(workspaces::table).load(&mut tx).await?;
        s.delete(workspaces::table).filter(workspaces::id.eq(3)).execute(&mut tx).await?;
        Ok::<_, Error>(())
    })
    .await
}

fn main() {
    let db = TenantDb::connect("postgres://ui@127.0.0.1/ui", 1).expect("pool");
    drop(accounts(db));
}
