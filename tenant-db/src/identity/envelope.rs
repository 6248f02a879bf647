//! Job envelopes: a job's payload sealed with its tenant, so that a worker gets a verified
//! [`Tenant`] back only by opening one.
//!
//! An envelope is bytes (JSON), for any queue: the tenant, when it was issued, when it expires,
//! the payload, and an HMAC-SHA256 over all of them under the tenant's own key
//! ([`KeyPurpose::JobEnvelope`], derived from a [`MasterKey`]). Only a verified tenant or a scope
//! can seal one ([`TenantContext`](super::TenantContext)); [`open`] refuses a changed tenant, payload or expiry, an expired
//! envelope, and one sealed under another tenant's key, each with its own [`EnvelopeError`].
//!
//! ```
//! use tenant_db::identity::{MasterKey, envelope};
//! use tenant_db::{Provenance, Tenant, TenantId};
//! use std::time::Duration;
//!
//! let master = MasterKey::new(&[1; 32])?;
//! let tenant = Tenant::assume_verified(TenantId::parse_text("acme")?);
//! let sealed = envelope::seal(&master, &tenant, &("export", 42), Duration::from_secs(600))?;
//!
//! // In the worker:
//! let job: envelope::Opened<(String, i64)> = envelope::open(&master, &sealed)?;
//! assert_eq!(job.tenant().id(), tenant.id());
//! assert_eq!(job.tenant().provenance(), Provenance::JobEnvelope);
//! assert_eq!(job.payload(), &("export".to_string(), 42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use super::keys::{KeyPurpose, MasterKey};
use super::{Provenance, Tenant, TenantContext};
use crate::{KeyKind, TenantId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The envelope format's version.
const VERSION: u32 = 1;

/// Why an envelope could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Not an envelope (not JSON of the expected shape, or another version).
    #[error("not a job envelope")]
    Malformed,
    /// The envelope names no valid tenant.
    #[error("the envelope's tenant is not a valid tenant id")]
    BadTenant,
    /// The MAC does not verify: the tenant, payload, times or MAC were changed, or it was
    /// sealed under another tenant's key.
    #[error("the envelope's MAC does not verify")]
    BadMac,
    /// The envelope has expired.
    #[error("the envelope has expired")]
    Expired,
    /// The envelope was issued in the future (more than a minute ahead of this clock).
    #[error("the envelope was issued in the future")]
    NotYetValid,
    /// The payload could not be serialized or deserialized.
    #[error("the payload could not be (de)serialized: {0}")]
    Payload(String),
    /// The time-to-live is zero, or the clock is before 1970.
    #[error("the envelope's lifetime is invalid")]
    BadLifetime,
    /// Sealed in an admin transaction: an envelope would carry the tenant past the grant's
    /// expiry, without its audit.
    #[error("an admin transaction cannot hand its tenant on in a job envelope")]
    AdminContext,
}

/// The wire form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    v: u32,
    kind: String,
    tenant: String,
    iat: u64,
    exp: u64,
    /// The payload's JSON, as a string, so that the MAC covers its exact bytes.
    payload: String,
    /// The MAC, lower-case hex.
    mac: String,
}

/// An opened envelope: the verified tenant, the payload, and its times.
#[derive(Debug, Clone)]
pub struct Opened<T> {
    tenant: Tenant,
    payload: T,
    issued_at: SystemTime,
    expires_at: SystemTime,
}

impl<T> Opened<T> {
    /// The tenant, verified by the envelope's MAC ([`Provenance::JobEnvelope`]).
    pub fn tenant(&self) -> Tenant {
        self.tenant
    }
    /// The payload.
    pub fn payload(&self) -> &T {
        &self.payload
    }
    /// The payload, by value.
    pub fn into_payload(self) -> T {
        self.payload
    }
    /// When it was sealed.
    pub fn issued_at(&self) -> SystemTime {
        self.issued_at
    }
    /// When it expires.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

fn secs(t: SystemTime) -> Result<u64, EnvelopeError> {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| EnvelopeError::BadLifetime)
}

/// The parts the MAC covers: every field.
fn mac_parts<'a>(
    kind: &'a str,
    tenant: &'a str,
    payload: &'a str,
    times: &'a [u8; 16],
) -> [&'a [u8]; 5] {
    [
        b"tenant-db job envelope v1",
        kind.as_bytes(),
        tenant.as_bytes(),
        payload.as_bytes(),
        times,
    ]
}

/// `iat` and `exp`, big-endian.
fn times(iat: u64, exp: u64) -> [u8; 16] {
    let mut out = [0; 16];
    out[..8].copy_from_slice(&iat.to_be_bytes());
    out[8..].copy_from_slice(&exp.to_be_bytes());
    out
}

/// Seals `payload` for the tenant of `sealer`, valid for `ttl`. Refused in an admin
/// transaction ([`EnvelopeError::AdminContext`]): a job it enqueued would act for the tenant
/// after the grant expired, unaudited.
pub fn seal<S: TenantContext + ?Sized, T: Serialize>(
    master: &MasterKey,
    sealer: &S,
    payload: &T,
    ttl: Duration,
) -> Result<Vec<u8>, EnvelopeError> {
    if sealer.context_provenance() == crate::Provenance::Admin {
        return Err(EnvelopeError::AdminContext);
    }
    seal_at(
        master,
        sealer.context_tenant(),
        payload,
        SystemTime::now(),
        ttl,
    )
}

fn seal_at<T: Serialize>(
    master: &MasterKey,
    tenant: TenantId,
    payload: &T,
    now: SystemTime,
    ttl: Duration,
) -> Result<Vec<u8>, EnvelopeError> {
    if ttl.is_zero() {
        return Err(EnvelopeError::BadLifetime);
    }
    let iat = secs(now)?;
    let exp = iat
        .checked_add(ttl.as_secs().max(1))
        .ok_or(EnvelopeError::BadLifetime)?;
    let payload =
        serde_json::to_string(payload).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
    let kind = tenant.kind().name().to_string();
    let id = tenant.to_string();
    let mac = master.sign(
        &tenant,
        KeyPurpose::JobEnvelope,
        &mac_parts(&kind, &id, &payload, &times(iat, exp)),
    );
    let wire = Wire {
        v: VERSION,
        kind,
        tenant: id,
        iat,
        exp,
        payload,
        mac,
    };
    serde_json::to_vec(&wire).map_err(|e| EnvelopeError::Payload(e.to_string()))
}

/// Opens an envelope: checks its MAC under its tenant's key, then its times, then decodes the
/// payload.
pub fn open<T: DeserializeOwned>(
    master: &MasterKey,
    bytes: &[u8],
) -> Result<Opened<T>, EnvelopeError> {
    open_at(master, bytes, SystemTime::now())
}

fn open_at<T: DeserializeOwned>(
    master: &MasterKey,
    bytes: &[u8],
    now: SystemTime,
) -> Result<Opened<T>, EnvelopeError> {
    let wire: Wire = serde_json::from_slice(bytes).map_err(|_| EnvelopeError::Malformed)?;
    if wire.v != VERSION {
        return Err(EnvelopeError::Malformed);
    }
    let kind = KeyKind::from_name(&wire.kind).ok_or(EnvelopeError::BadTenant)?;
    let tenant = TenantId::parse_as(kind, &wire.tenant).map_err(|_| EnvelopeError::BadTenant)?;
    if tenant.to_string() != wire.tenant {
        return Err(EnvelopeError::BadTenant);
    }
    let stamped = times(wire.iat, wire.exp);
    let parts = mac_parts(&wire.kind, &wire.tenant, &wire.payload, &stamped);
    if !master.verify(&tenant, KeyPurpose::JobEnvelope, &parts, &wire.mac) {
        return Err(EnvelopeError::BadMac);
    }
    let now = secs(now)?;
    if now >= wire.exp {
        return Err(EnvelopeError::Expired);
    }
    if wire.iat > now.saturating_add(60) {
        return Err(EnvelopeError::NotYetValid);
    }
    let payload =
        serde_json::from_str(&wire.payload).map_err(|e| EnvelopeError::Payload(e.to_string()))?;
    Ok(Opened {
        tenant: Tenant::verified(tenant, Provenance::JobEnvelope),
        payload,
        issued_at: UNIX_EPOCH + Duration::from_secs(wire.iat),
        expires_at: UNIX_EPOCH + Duration::from_secs(wire.exp),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn master() -> MasterKey {
        MasterKey::new(&[4; 32]).expect("32 bytes")
    }

    fn acme() -> Tenant {
        Tenant::assume_verified(TenantId::parse_text("acme").expect("a slug"))
    }

    fn tamper(bytes: &[u8], f: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(bytes).expect("json");
        f(&mut v);
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn an_envelope_opens_to_its_tenant_and_payload() -> Result<(), EnvelopeError> {
        let sealed = seal(
            &master(),
            &acme(),
            &json!({"report": 7}),
            Duration::from_secs(60),
        )?;
        let opened: Opened<Value> = open(&master(), &sealed)?;
        assert_eq!(opened.tenant().id(), acme().id());
        assert_eq!(opened.tenant().provenance(), Provenance::JobEnvelope);
        assert_eq!(opened.payload(), &json!({"report": 7}));
        assert!(opened.expires_at() > opened.issued_at());
        Ok(())
    }

    #[test]
    fn tampering_expiry_and_foreign_keys_are_refused() -> Result<(), EnvelopeError> {
        let m = master();
        let sealed = seal(&m, &acme(), &json!({"report": 7}), Duration::from_secs(60))?;
        let open_m = |b: &[u8]| super::open::<Value>(&m, b).map(|_| ());
        let cases: Vec<(&str, Vec<u8>, EnvelopeError)> = vec![
            (
                "tenant",
                tamper(&sealed, |v| v["tenant"] = json!("globex")),
                EnvelopeError::BadMac,
            ),
            (
                "kind",
                tamper(&sealed, |v| v["kind"] = json!("uuid")),
                EnvelopeError::BadTenant,
            ),
            (
                "payload",
                tamper(&sealed, |v| v["payload"] = json!("{\"report\":8}")),
                EnvelopeError::BadMac,
            ),
            (
                "expiry",
                tamper(&sealed, |v| v["exp"] = json!(u64::MAX)),
                EnvelopeError::BadMac,
            ),
            (
                "issued",
                tamper(&sealed, |v| v["iat"] = json!(0)),
                EnvelopeError::BadMac,
            ),
            (
                "mac",
                tamper(&sealed, |v| v["mac"] = json!("00")),
                EnvelopeError::BadMac,
            ),
            (
                "mac not hex",
                tamper(&sealed, |v| v["mac"] = json!("zz")),
                EnvelopeError::BadMac,
            ),
            (
                "version",
                tamper(&sealed, |v| v["v"] = json!(2)),
                EnvelopeError::Malformed,
            ),
            (
                "extra field",
                tamper(&sealed, |v| v["tenant_override"] = json!("globex")),
                EnvelopeError::Malformed,
            ),
            (
                "bad tenant",
                tamper(&sealed, |v| v["tenant"] = json!("acme corp")),
                EnvelopeError::BadTenant,
            ),
            ("garbage", b"not json".to_vec(), EnvelopeError::Malformed),
        ];
        for (what, bytes, expected) in cases {
            assert_eq!(open_m(&bytes), Err(expected), "{what}");
        }
        // Sealed under another master: another key for the same tenant.
        let other = MasterKey::new(&[5; 32]).map_err(|_| EnvelopeError::BadLifetime)?;
        assert_eq!(
            open::<Value>(&other, &sealed).map(|_| ()),
            Err(EnvelopeError::BadMac)
        );
        // A globex envelope relabelled for acme: globex's key, acme's name.
        let globex = Tenant::assume_verified(
            TenantId::parse_text("globex").map_err(|_| EnvelopeError::BadTenant)?,
        );
        let theirs = seal(&m, &globex, &json!({"report": 7}), Duration::from_secs(60))?;
        let relabelled = tamper(&theirs, |v| v["tenant"] = json!("acme"));
        assert_eq!(open_m(&relabelled), Err(EnvelopeError::BadMac));
        Ok(())
    }

    #[test]
    fn every_key_kind_round_trips() -> Result<(), EnvelopeError> {
        let m = master();
        for id in [
            TenantId::new_random(),
            TenantId::from_i64(4711).map_err(|_| EnvelopeError::BadTenant)?,
            TenantId::parse_text("acme:eu").map_err(|_| EnvelopeError::BadTenant)?,
        ] {
            let tenant = Tenant::assume_verified(id);
            let sealed = seal(&m, &tenant, &"job", Duration::from_secs(60))?;
            let opened: Opened<String> = open(&m, &sealed)?;
            assert_eq!(opened.tenant().id(), id);
        }
        Ok(())
    }

    #[test]
    fn expired_and_future_envelopes_are_refused() -> Result<(), EnvelopeError> {
        let m = master();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let sealed = seal_at(&m, acme().id(), &1, t0, Duration::from_secs(60))?;
        assert!(open_at::<i32>(&m, &sealed, t0 + Duration::from_secs(59)).is_ok());
        assert_eq!(
            open_at::<i32>(&m, &sealed, t0 + Duration::from_secs(60)).map(|_| ()),
            Err(EnvelopeError::Expired)
        );
        assert_eq!(
            open_at::<i32>(&m, &sealed, t0 - Duration::from_secs(120)).map(|_| ()),
            Err(EnvelopeError::NotYetValid)
        );
        assert_eq!(
            seal_at(&m, acme().id(), &1, t0, Duration::ZERO).map(|_| ()),
            Err(EnvelopeError::BadLifetime)
        );
        // Issued up to a minute ahead of this clock is accepted, not more.
        assert!(open_at::<i32>(&m, &sealed, t0 - Duration::from_secs(60)).is_ok());
        assert_eq!(
            open_at::<i32>(&m, &sealed, t0 - Duration::from_secs(61)).map(|_| ()),
            Err(EnvelopeError::NotYetValid)
        );
        let opened = open_at::<i32>(&m, &sealed, t0)?;
        assert_eq!(
            (opened.issued_at(), opened.expires_at()),
            (t0, t0 + Duration::from_secs(60))
        );
        // A payload of another type.
        assert!(matches!(
            open_at::<String>(&m, &sealed, t0),
            Err(EnvelopeError::Payload(_))
        ));
        Ok(())
    }
}
