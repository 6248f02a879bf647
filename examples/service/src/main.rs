//! Runs the example service on `127.0.0.1:3000` (or `PORT`), after creating its database,
//! roles and schema. Prints a token for each of two tenants to try it with `curl`.
//!
//! Run: `cargo run -p tenant-db-example-service`

use std::time::{SystemTime, UNIX_EPOCH};
use tenant_db::identity::{KeyPurpose, MasterKey};
use tenant_db::{TenantDb, TenantId};
use tenant_db_example_service::{
    AUDIENCE, DATABASE, TENANT_TABLES, TIERS, router_with_metrics, schema_sql, verifier,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = tenant_db_tests::provision(DATABASE, &schema_sql()?, TENANT_TABLES).await?;
    let tiers = tenant_db::limits::Tiers::from_json(TIERS)?;
    let db = TenantDb::builder(url)
        .max_size(8)
        .tiers(tiers.clone())
        .build()?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let secret = match std::env::var("SERVICE_MASTER_KEY") {
        Ok(secret) => secret.into_bytes(),
        Err(_) => {
            eprintln!("SERVICE_MASTER_KEY is not set: using a development key");
            b"development master key, never in production!!".to_vec()
        }
    };
    let master = MasterKey::new(&secret)?;
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    for name in ["acme", "globex"] {
        let tenant = TenantId::new_random();
        let claims = serde_json::json!({"tenant_id": tenant.to_string(), "aud": AUDIENCE, "exp": exp, "sub": name});
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&master.derive(&tenant, KeyPurpose::Token)),
        )?;
        println!("{name}: curl -H 'Authorization: Bearer {token}' localhost:3000/projects");
    }
    println!("metrics: curl localhost:3000/metrics");
    let auth = tenant_db_axum::TenantAuth::new(verifier(master)?).limit(std::sync::Arc::new(
        tenant_db_limits::LocalLimiter::new(tiers),
    ));
    let app = router_with_metrics(db, auth, Some(metrics));
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}")).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
