//! The service's CI runs tenant-db's red-team kit on its database: every table its models
//! register is attacked as the application role, and nothing may cross.

#![allow(clippy::unwrap_used, missing_docs)]

use tenant_db::redteam::{Target, run};
use tenant_db::registry::Registry;
use tenant_db_example_service::{TENANT_TABLES, schema_sql};

#[tokio::test]
async fn nothing_crosses_tenants_in_the_service_database() {
    let url = tenant_db_tests::provision(
        "tenant_db_service_redteam",
        &schema_sql().unwrap(),
        TENANT_TABLES,
    )
    .await
    .unwrap();
    let registry = Registry::collected_under("tenant_db_example_service").unwrap();
    let targets = Target::from_registry(&registry);
    assert_eq!(targets.len(), TENANT_TABLES.len(), "{registry:?}");
    let report = run(&url, &targets).await.unwrap();
    assert!(report.is_clean(), "{report}");
    assert!(report.leftovers.is_empty(), "{:?}", report.leftovers);
}
