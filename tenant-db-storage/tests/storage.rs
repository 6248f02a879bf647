//! Tenant A's context cannot read, overwrite, list or sign for tenant B's objects; hostile
//! relative paths are refused; signed URLs bind tenant, path, method and expiry. On the
//! in-memory store and on a local directory (created and removed by the test).

#![allow(clippy::unwrap_used, missing_docs)]

use bytes::Bytes;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use std::sync::Arc;
use std::time::Duration;
use tenant_db::identity::MasterKey;
use tenant_db::{Tenant, TenantId};
use tenant_db_storage::{PathError, Signature, SignedUrlError, TenantPath, TenantStore, UrlSigner};

fn tenant() -> Tenant {
    Tenant::assume_verified(TenantId::new_random())
}

#[test]
fn hostile_relative_paths_are_refused() {
    let a = tenant();
    for (path, expected) in [
        ("", PathError::EmptySegment),
        ("a//b", PathError::EmptySegment),
        ("a/", PathError::EmptySegment),
        ("/etc/passwd", PathError::Absolute),
        ("..", PathError::DotSegment),
        ("a/../../b", PathError::DotSegment),
        ("./a", PathError::DotSegment),
        ("a\\..\\b", PathError::ForbiddenCharacter(1)),
        ("a%2F..%2Fb", PathError::ForbiddenCharacter(1)),
        ("..%2f", PathError::ForbiddenCharacter(2)),
        ("a\u{2215}..\u{2215}b", PathError::ForbiddenCharacter(1)),
        ("a\u{FF0F}b", PathError::ForbiddenCharacter(1)),
        ("a\u{2044}b", PathError::ForbiddenCharacter(1)),
        ("a\0b", PathError::ForbiddenCharacter(1)),
        ("a\nb", PathError::ForbiddenCharacter(1)),
    ] {
        assert_eq!(TenantPath::new(&a, path), Err(expected), "{path:?}");
    }
    assert_eq!(
        TenantPath::new(&a, &"x".repeat(1025)),
        Err(PathError::TooLong)
    );
    assert!(TenantPath::new(&a, &"x".repeat(1024)).is_ok());
    let ok = TenantPath::new(&a, "reports/2026/q3.csv").unwrap();
    assert_eq!(
        ok.as_path().as_ref(),
        format!("tenants/uuid/{}/reports/2026/q3.csv", a.id())
    );
}

async fn isolation_on(store: Arc<dyn ObjectStore>) {
    let store = TenantStore::new(store);
    let (a, b) = (tenant(), tenant());
    let b_report = TenantPath::new(&b, "reports/q3.csv").unwrap();
    store
        .put(&b_report, Bytes::from_static(b"b's numbers"))
        .await
        .unwrap();
    let a_report = TenantPath::new(&a, "reports/q3.csv").unwrap();
    // A's path of the same name is A's own: not found, then A's own object.
    assert!(store.get(&a_report).await.is_err());
    store
        .put(&a_report, Bytes::from_static(b"a's numbers"))
        .await
        .unwrap();
    assert_eq!(
        store.get(&b_report).await.unwrap(),
        Bytes::from_static(b"b's numbers")
    );
    // A's listing shows A's objects only, whatever the prefix.
    let listed = store.list(&a, "").await.unwrap();
    assert_eq!(listed, vec![a_report.clone()]);
    assert!(
        store
            .list(&a, "reports")
            .await
            .unwrap()
            .iter()
            .all(|p| p.tenant() == a.id())
    );
    // Deleting A's does not touch B's.
    store.delete(&a_report).await.unwrap();
    assert_eq!(
        store.get(&b_report).await.unwrap(),
        Bytes::from_static(b"b's numbers")
    );
    assert!(store.list(&a, "").await.unwrap().is_empty());
    assert_eq!(store.list(&b, "").await.unwrap(), vec![b_report]);
}

#[tokio::test]
async fn a_tenant_cannot_reach_another_tenants_objects_in_memory() {
    isolation_on(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn a_tenant_cannot_reach_another_tenants_objects_on_disk() {
    let dir = std::env::temp_dir().join(format!("tenant-db-storage-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    isolation_on(Arc::new(LocalFileSystem::new_with_prefix(&dir).unwrap())).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn signed_urls_bind_tenant_path_method_and_expiry() {
    let signer = UrlSigner::new(MasterKey::new(&[31; 32]).unwrap());
    let (a, b) = (tenant(), tenant());
    let a_path = TenantPath::new(&a, "exports/all.csv").unwrap();
    let b_path = TenantPath::new(&b, "exports/all.csv").unwrap();
    let sig = signer
        .sign("GET", &a_path, Duration::from_secs(300))
        .unwrap();
    let a_str = a_path.as_path().as_ref().to_string();
    let b_str = b_path.as_path().as_ref().to_string();
    assert_eq!(signer.verify("GET", &a_str, &sig), Ok(a_path.clone()));
    // A's signature on B's path (same relative name): refused.
    assert_eq!(
        signer.verify("GET", &b_str, &sig),
        Err(SignedUrlError::BadSignature)
    );
    // Another method, another path of A, a later expiry, a changed signature.
    assert_eq!(
        signer.verify("DELETE", &a_str, &sig),
        Err(SignedUrlError::BadSignature)
    );
    let other = format!("tenants/uuid/{}/exports/other.csv", a.id());
    assert_eq!(
        signer.verify("GET", &other, &sig),
        Err(SignedUrlError::BadSignature)
    );
    let later = Signature {
        expires: sig.expires + 3600,
        sig: sig.sig.clone(),
    };
    assert_eq!(
        signer.verify("GET", &a_str, &later),
        Err(SignedUrlError::BadSignature)
    );
    let flipped = Signature {
        expires: sig.expires,
        // Another last digit (a fixed '0' left the signature unchanged one time in 16).
        sig: format!(
            "{}{}",
            &sig.sig[..sig.sig.len() - 1],
            if sig.sig.ends_with('0') { '1' } else { '0' }
        ),
    };
    assert!(signer.verify("GET", &a_str, &flipped).is_err());
    // Traversal in a signed path is refused before any key is derived.
    let sneaky = format!("tenants/uuid/{}/../{}/exports/all.csv", a.id(), b.id());
    assert_eq!(
        signer.verify("GET", &sneaky, &sig),
        Err(SignedUrlError::BadPath)
    );
    assert_eq!(
        signer.verify("GET", "exports/all.csv", &sig),
        Err(SignedUrlError::BadPath)
    );
    // Expired.
    let expired = signer.sign("GET", &a_path, Duration::ZERO).unwrap();
    assert_eq!(
        signer.verify("GET", &a_str, &expired),
        Err(SignedUrlError::Expired)
    );
    // Integer and text tenants: each verifies, and a path of the same key under another kind
    // does not.
    for id in [
        TenantId::from_i64(4711).unwrap(),
        TenantId::parse_text("acme").unwrap(),
    ] {
        let t = Tenant::assume_verified(id);
        let p = TenantPath::new(&t, "exports/all.csv").unwrap();
        let s = signer.sign("GET", &p, Duration::from_secs(300)).unwrap();
        let p_str = p.as_path().as_ref().to_string();
        assert_eq!(signer.verify("GET", &p_str, &s), Ok(p));
        let as_text = format!("tenants/text/{id}/exports/all.csv");
        if !p_str.starts_with("tenants/text/") {
            assert_eq!(
                signer.verify("GET", &as_text, &s),
                Err(SignedUrlError::BadSignature)
            );
        }
    }
    // Another master cannot sign for A.
    let forger = UrlSigner::new(MasterKey::new(&[32; 32]).unwrap());
    let forged = forger
        .sign("GET", &a_path, Duration::from_secs(300))
        .unwrap();
    assert_eq!(
        signer.verify("GET", &a_str, &forged),
        Err(SignedUrlError::BadSignature)
    );
}

#[tokio::test]
async fn a_path_made_in_an_admin_transaction_is_not_signed() {
    use tenant_db::admin::{AdminGrant, Reason};
    use tenant_db_tests::schema::{DATABASE, TENANT_TABLES, schema_sql};
    let url = tenant_db_tests::provision(DATABASE, &schema_sql(), TENANT_TABLES)
        .await
        .unwrap();
    let db = tenant_db::TenantDb::connect(&url, 1).unwrap();
    let signer = UrlSigner::new(MasterKey::new(&[31; 32]).unwrap());
    let grant = AdminGrant::for_tenant(
        "support",
        Reason::ticket("SUP-9").unwrap(),
        TenantId::new_random(),
        Duration::from_secs(60),
    )
    .unwrap();
    let signed = db
        .admin_transaction(&grant, async |tx| {
            let path = TenantPath::new(&tx.scope(), "reports/q3.csv").unwrap();
            Ok::<_, tenant_db::Error>(signer.sign("GET", &path, Duration::from_secs(3600)))
        })
        .await
        .unwrap();
    assert_eq!(signed, Err(SignedUrlError::AdminContext));
}
