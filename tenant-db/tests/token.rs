//! Token verification, attacked: `alg: none`, algorithm confusion, foreign and retired keys,
//! expired and premature tokens, wrong issuer and audience, hostile tenant claims, and a token
//! for one tenant signed with another tenant's key.

#![allow(clippy::unwrap_used, missing_docs)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tenant_db::identity::{
    KeyPurpose, MasterKey, TokenError, TokenVerifier, VerifierConfigError, VerifyingKey,
};
use tenant_db::{KeyKind, Provenance, TenantId};

const ACME: &str = "7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01";
const GLOBEX: &str = "2b4c8d10-2222-4c6d-8e0f-1a2b3c4d5e6f";

fn key(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(tenant: &str) -> Value {
    json!({ "tenant_id": tenant, "exp": now() + 600, "sub": "user-1" })
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs(secret: &[u8], claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(secret),
    )
}

fn uuid_verifier(key: VerifyingKey) -> TokenVerifier {
    TokenVerifier::builder(KeyKind::Uuid)
        .key(key)
        .build()
        .unwrap()
}

fn b64(v: &Value) -> String {
    use std::fmt::Write;
    // base64url without padding, by hand: the test must not trust the library it attacks.
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = v.to_string().into_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            let _ = write!(out, "{}", A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn a_valid_token_yields_its_tenant_with_token_provenance() {
    let v = uuid_verifier(VerifyingKey::hs256(b"a shared secret of enough length!!"));
    let verified = v
        .verify(&hs(b"a shared secret of enough length!!", &claims(ACME)))
        .unwrap();
    assert_eq!(verified.tenant().id(), ACME.parse::<TenantId>().unwrap());
    assert_eq!(verified.tenant().provenance(), Provenance::Token);
    assert_eq!(verified.claims()["sub"], "user-1");
}

#[test]
fn alg_none_and_algorithm_confusion_are_refused() {
    // `alg: none`, unsigned.
    let v = uuid_verifier(VerifyingKey::hs256(b"secret"));
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&claims(ACME))
    );
    assert_eq!(v.verify(&none).unwrap_err(), TokenError::Malformed);

    // An RS256 key: a token signed HS256 with the RSA public key as the HMAC secret.
    let public = key("rsa_a.pub.pem");
    let v = uuid_verifier(VerifyingKey::rs256_pem(&public).unwrap());
    let forged = hs(&public, &claims(ACME));
    assert_eq!(
        v.verify(&forged).unwrap_err(),
        TokenError::AlgorithmNotAllowed
    );
    // And an ES256 token presented to the RS256 key.
    let es = sign(
        Algorithm::ES256,
        None,
        &claims(ACME),
        &EncodingKey::from_ec_pem(&key("ec.pem")).unwrap(),
    );
    assert_eq!(v.verify(&es).unwrap_err(), TokenError::AlgorithmNotAllowed);
}

#[test]
fn rs256_es256_and_eddsa_verify_with_their_key_and_no_other() {
    let cases = [
        (
            VerifyingKey::rs256_pem(&key("rsa_a.pub.pem")).unwrap(),
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(&key("rsa_a.pem")).unwrap(),
            Some(EncodingKey::from_rsa_pem(&key("rsa_b.pem")).unwrap()),
        ),
        (
            VerifyingKey::es256_pem(&key("ec.pub.pem")).unwrap(),
            Algorithm::ES256,
            EncodingKey::from_ec_pem(&key("ec.pem")).unwrap(),
            None,
        ),
        (
            VerifyingKey::eddsa_pem(&key("ed.pub.pem")).unwrap(),
            Algorithm::EdDSA,
            EncodingKey::from_ed_pem(&key("ed.pem")).unwrap(),
            None,
        ),
    ];
    for (verifying, alg, signing, other) in cases {
        let v = uuid_verifier(verifying);
        let token = sign(alg, None, &claims(ACME), &signing);
        assert_eq!(
            v.verify(&token).unwrap().tenant().id().to_string(),
            ACME,
            "{alg:?}"
        );
        if let Some(other) = other {
            let foreign = sign(alg, None, &claims(ACME), &other);
            assert_eq!(v.verify(&foreign).unwrap_err(), TokenError::BadSignature);
        }
        // A changed claim breaks the signature.
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = b64(&claims(GLOBEX));
        assert_eq!(
            v.verify(&parts.join(".")).unwrap_err(),
            TokenError::BadSignature,
            "{alg:?}"
        );
    }
    assert_eq!(
        VerifyingKey::rs256_pem(b"not a key").unwrap_err(),
        VerifierConfigError::BadKey(tenant_db::identity::TokenAlgorithm::Rs256)
    );
}

#[test]
fn expiry_not_before_issuer_and_audience_are_checked() {
    let secret = b"secret";
    let v = TokenVerifier::builder(KeyKind::Uuid)
        .key(VerifyingKey::hs256(secret))
        .issuer("https://auth.example")
        .audience("billing")
        .leeway(Duration::from_secs(30))
        .build()
        .unwrap();
    let good = json!({"tenant_id": ACME, "exp": now() + 600, "iss": "https://auth.example", "aud": "billing"});
    assert!(v.verify(&hs(secret, &good)).is_ok());
    let with = |field: &str, value: Value| {
        let mut c = good.clone();
        c[field] = value;
        hs(secret, &c)
    };
    let without = |field: &str| {
        let mut c = good.clone();
        c.as_object_mut().unwrap().remove(field);
        hs(secret, &c)
    };
    assert_eq!(
        v.verify(&with("exp", json!(now() - 120))).unwrap_err(),
        TokenError::Expired
    );
    // Within the leeway.
    assert!(v.verify(&with("exp", json!(now() - 5))).is_ok());
    assert_eq!(v.verify(&without("exp")).unwrap_err(), TokenError::Expired);
    assert_eq!(
        v.verify(&with("nbf", json!(now() + 120))).unwrap_err(),
        TokenError::NotYetValid
    );
    assert!(v.verify(&with("nbf", json!(now() - 5))).is_ok());
    assert_eq!(
        v.verify(&with("iss", json!("https://evil.example")))
            .unwrap_err(),
        TokenError::WrongIssuer
    );
    assert_eq!(
        v.verify(&without("iss")).unwrap_err(),
        TokenError::WrongIssuer
    );
    assert_eq!(
        v.verify(&with("aud", json!("admin"))).unwrap_err(),
        TokenError::WrongAudience
    );
    assert_eq!(
        v.verify(&without("aud")).unwrap_err(),
        TokenError::WrongAudience
    );
    assert_eq!(v.verify("not.a.token").unwrap_err(), TokenError::Malformed);
    assert_eq!(v.verify("").unwrap_err(), TokenError::Malformed);
}

#[test]
fn the_tenant_claim_is_required_and_parsed_strictly() {
    let secret = b"secret";
    let v = uuid_verifier(VerifyingKey::hs256(secret));
    let token = |tenant: Value| hs(secret, &json!({"tenant_id": tenant, "exp": now() + 600}));
    assert_eq!(
        v.verify(&hs(secret, &json!({"exp": now() + 600})))
            .unwrap_err(),
        TokenError::MissingTenantClaim
    );
    assert_eq!(
        v.verify(&token(Value::Null)).unwrap_err(),
        TokenError::MissingTenantClaim
    );
    for bad in [
        json!(""),
        json!(" 7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01"),
        json!("7f1f2c1e-1111-4b5b-9a1a-5d2c0d4f8e01' OR 1=1 --"),
        json!("00000000-0000-0000-0000-000000000000"),
        json!(42),
        json!([ACME]),
        json!({"id": ACME}),
    ] {
        assert!(
            matches!(
                v.verify(&token(bad.clone())),
                Err(TokenError::InvalidTenantClaim(_))
            ),
            "{bad}"
        );
    }

    // A configured claim name; integer and text kinds.
    let ints = TokenVerifier::builder(KeyKind::Int)
        .key(VerifyingKey::hs256(secret))
        .tenant_claim("account_id")
        .build()
        .unwrap();
    let t = |v: Value| hs(secret, &json!({"account_id": v, "exp": now() + 600}));
    assert_eq!(
        ints.verify(&t(json!(4711))).unwrap().tenant().id().as_i64(),
        Some(4711)
    );
    assert_eq!(
        ints.verify(&t(json!("4711")))
            .unwrap()
            .tenant()
            .id()
            .as_i64(),
        Some(4711)
    );
    for bad in [
        json!(0),
        json!(-1),
        json!(1.5),
        json!("0047"),
        json!(" 4711"),
        json!(u64::MAX),
    ] {
        assert!(
            matches!(
                ints.verify(&t(bad.clone())),
                Err(TokenError::InvalidTenantClaim(_))
            ),
            "{bad}"
        );
    }
    // The default claim name is not read when another is configured.
    assert_eq!(
        ints.verify(&hs(secret, &json!({"tenant_id": 4711, "exp": now() + 600})))
            .unwrap_err(),
        TokenError::MissingTenantClaim
    );
    let texts = TokenVerifier::builder(KeyKind::Text)
        .key(VerifyingKey::hs256(secret))
        .build()
        .unwrap();
    assert_eq!(
        texts
            .verify(&token(json!("acme-eu")))
            .unwrap()
            .tenant()
            .id()
            .as_text(),
        Some("acme-eu")
    );
    for bad in [json!("acme eu"), json!("acme\n"), json!("-acme"), json!(7)] {
        assert!(
            matches!(
                texts.verify(&token(bad.clone())),
                Err(TokenError::InvalidTenantClaim(_))
            ),
            "{bad}"
        );
    }

    // A claim of the wrong JSON type says what was expected.
    use tenant_db::ParseTenantIdError as P;
    assert_eq!(
        v.verify(&token(json!(42))).unwrap_err(),
        TokenError::InvalidTenantClaim(P::NotAUuid)
    );
    assert_eq!(
        ints.verify(&t(json!(true))).unwrap_err(),
        TokenError::InvalidTenantClaim(P::NotAnInteger)
    );
    assert_eq!(
        texts.verify(&token(json!(7))).unwrap_err(),
        TokenError::InvalidTenantClaim(P::InvalidCharacter(0))
    );
    // Every spelling of a UUID names its one tenant (see `TenantId`'s parsing).
    let upper = ACME.to_uppercase();
    assert_ne!(upper, ACME);
    assert_eq!(
        v.verify(&token(json!(upper)))
            .unwrap()
            .tenant()
            .id()
            .to_string(),
        ACME.to_lowercase()
    );
}

#[test]
fn per_tenant_keys_refuse_a_token_signed_with_another_tenants_key() {
    let master = MasterKey::new(&[9; 32]).unwrap();
    let v = uuid_verifier(VerifyingKey::per_tenant(master.clone()));
    let acme: TenantId = ACME.parse().unwrap();
    let globex: TenantId = GLOBEX.parse().unwrap();
    let acme_key = master.derive(&acme, KeyPurpose::Token);
    let globex_key = master.derive(&globex, KeyPurpose::Token);

    assert_eq!(
        v.verify(&hs(&acme_key, &claims(ACME)))
            .unwrap()
            .tenant()
            .id(),
        acme
    );
    assert_eq!(
        v.verify(&hs(&globex_key, &claims(GLOBEX)))
            .unwrap()
            .tenant()
            .id(),
        globex
    );
    // Acme's key, leaked, cannot forge a token for globex.
    assert_eq!(
        v.verify(&hs(&acme_key, &claims(GLOBEX))).unwrap_err(),
        TokenError::BadSignature
    );
    // Nor can the master secret used directly, or another purpose's key.
    assert_eq!(
        v.verify(&hs(&[9; 32], &claims(ACME))).unwrap_err(),
        TokenError::BadSignature
    );
    let envelope_key = master.derive(&acme, KeyPurpose::JobEnvelope);
    assert_eq!(
        v.verify(&hs(&envelope_key, &claims(ACME))).unwrap_err(),
        TokenError::BadSignature
    );
    // A token that names no tenant has no key.
    assert_eq!(
        v.verify(&hs(&acme_key, &json!({"exp": now() + 600})))
            .unwrap_err(),
        TokenError::MissingTenantClaim
    );
}

#[test]
fn keys_are_chosen_by_kid_and_rotate_with_an_overlap_window() {
    let old = MasterKey::new(&[1; 32]).unwrap();
    let new = MasterKey::new(&[2; 32]).unwrap();
    let acme: TenantId = ACME.parse().unwrap();
    let signed = |master: &MasterKey, kid: Option<&str>| {
        sign(
            Algorithm::HS256,
            kid,
            &claims(ACME),
            &EncodingKey::from_secret(&master.derive(&acme, KeyPurpose::Token)),
        )
    };
    let verifier = |cut_off: SystemTime| {
        TokenVerifier::builder(KeyKind::Uuid)
            .key(
                VerifyingKey::per_tenant(old.clone())
                    .with_kid("v1")
                    .retire_at(cut_off),
            )
            .key(VerifyingKey::per_tenant(new.clone()).with_kid("v2"))
            .build()
            .unwrap()
    };
    // During the overlap: both keys.
    let during = verifier(SystemTime::now() + Duration::from_secs(3600));
    assert!(during.verify(&signed(&old, Some("v1"))).is_ok());
    assert!(during.verify(&signed(&new, Some("v2"))).is_ok());
    // A token must be verified by the key its kid names.
    assert_eq!(
        during.verify(&signed(&old, Some("v2"))).unwrap_err(),
        TokenError::BadSignature
    );
    assert_eq!(
        during.verify(&signed(&new, Some("v3"))).unwrap_err(),
        TokenError::UnknownKey
    );
    assert_eq!(
        during.verify(&signed(&new, None)).unwrap_err(),
        TokenError::UnknownKey
    );
    // After the cut-off: only the new key.
    let after = verifier(SystemTime::now() - Duration::from_secs(1));
    assert_eq!(
        after.verify(&signed(&old, Some("v1"))).unwrap_err(),
        TokenError::KeyRetired
    );
    assert!(after.verify(&signed(&new, Some("v2"))).is_ok());
}

#[test]
fn bad_configurations_are_refused() {
    let b = || TokenVerifier::builder(KeyKind::Uuid);
    assert_eq!(b().build().unwrap_err(), VerifierConfigError::NoKeys);
    assert_eq!(
        b().key(VerifyingKey::hs256(b"a"))
            .key(VerifyingKey::hs256(b"b"))
            .build()
            .unwrap_err(),
        VerifierConfigError::DuplicateKeyId(None)
    );
    assert_eq!(
        b().key(VerifyingKey::hs256(b"a").with_kid("k"))
            .key(VerifyingKey::hs256(b"b").with_kid("k"))
            .build()
            .unwrap_err(),
        VerifierConfigError::DuplicateKeyId(Some("k".into()))
    );
    assert_eq!(
        b().key(VerifyingKey::hs256(b"a"))
            .leeway(Duration::from_secs(301))
            .build()
            .unwrap_err(),
        VerifierConfigError::LeewayTooLarge
    );
    assert!(
        b().key(VerifyingKey::hs256(b"a"))
            .leeway(Duration::from_secs(300))
            .build()
            .is_ok()
    );
    assert_eq!(
        b().key(VerifyingKey::hs256(b"a"))
            .tenant_claim("")
            .build()
            .unwrap_err(),
        VerifierConfigError::EmptyClaimName
    );
    // Key material never shows in Debug output.
    let debug = format!(
        "{:?}",
        b().key(VerifyingKey::hs256(b"hunter2-secret"))
            .build()
            .unwrap()
    );
    assert!(!debug.contains("hunter2"), "{debug}");
    // What it shows instead: each key's kid, algorithm and retirement.
    let key = VerifyingKey::hs256(b"hunter2-secret").with_kid("k1");
    assert_eq!(
        format!("{key:?}"),
        "VerifyingKey { kid: Some(\"k1\"), algorithm: Hs256, per_tenant: false, retire_at: None }"
    );
}
