//! Per-tenant keys: one master secret, a different key for every tenant and purpose (HKDF,
//! RFC 5869, with SHA-256), so that a leaked tenant key exposes that tenant only.
//!
//! The same derivation serves every boundary that signs for a tenant (tokens, job envelopes,
//! signed URLs): each passes its own [`KeyPurpose`], so a key derived for one purpose is useless
//! for another.

use crate::TenantId;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The shortest master secret accepted, in bytes.
pub const MIN_MASTER_LEN: usize = 32;

/// What a derived key is for; part of the derivation, so keys of different purposes differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// Signing and verifying a tenant's tokens (HS256).
    Token,
    /// Sealing a tenant's job envelopes.
    JobEnvelope,
    /// Signing a tenant's URLs.
    SignedUrl,
}

impl KeyPurpose {
    fn label(self) -> &'static str {
        match self {
            KeyPurpose::Token => "token",
            KeyPurpose::JobEnvelope => "job-envelope",
            KeyPurpose::SignedUrl => "signed-url",
        }
    }
}

/// Why a master secret was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MasterKeyError {
    /// The secret is shorter than [`MIN_MASTER_LEN`] bytes; its length is given.
    #[error("the master secret is too short ({0} bytes; at least 32)")]
    TooShort(usize),
}

/// A master secret from which every tenant's keys are derived. Keep it in your secret store;
/// rotate it by adding a new one under a new key id (see
/// [`TokenVerifier`](crate::identity::TokenVerifier)).
#[derive(Clone)]
pub struct MasterKey {
    hkdf: Hkdf<Sha256>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// The salt of every derivation: names the scheme and its version.
const SALT: &[u8] = b"tenant-db key derivation v1";

impl MasterKey {
    /// A master key over `secret` (at least 32 random bytes).
    pub fn new(secret: &[u8]) -> Result<Self, MasterKeyError> {
        if secret.len() < MIN_MASTER_LEN {
            return Err(MasterKeyError::TooShort(secret.len()));
        }
        Ok(MasterKey {
            hkdf: Hkdf::<Sha256>::new(Some(SALT), secret),
        })
    }

    /// The 32-byte key of `tenant` for `purpose`. The tenant is written with its kind and its
    /// length, so no two (purpose, tenant) pairs share an input.
    pub fn derive(&self, tenant: &TenantId, purpose: KeyPurpose) -> [u8; 32] {
        let id = tenant.to_string();
        let info = [
            purpose.label().as_bytes(),
            &[0],
            tenant.kind().name().as_bytes(),
            &[0],
            &(id.len() as u64).to_be_bytes(),
            id.as_bytes(),
        ]
        .concat();
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit of 255 * 32.
        if self.hkdf.expand(&info, &mut key).is_err() {
            key = [0; 32];
        }
        key
    }

    /// The HMAC-SHA256 of `parts` (each length-prefixed, so no two lists of parts share an
    /// input) under `tenant`'s key for `purpose`.
    fn mac(&self, tenant: &TenantId, purpose: KeyPurpose, parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
        // HMAC takes keys of any length: this never fails.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.derive(tenant, purpose)).ok()?;
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        Some(mac)
    }

    /// A tag over `parts` for `tenant` and `purpose`, lower-case hex: what job envelopes and
    /// signed URLs carry.
    pub fn sign(&self, tenant: &TenantId, purpose: KeyPurpose, parts: &[&[u8]]) -> String {
        self.mac(tenant, purpose, parts)
            .map(|m| {
                m.finalize()
                    .into_bytes()
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `tag` is [`sign`](MasterKey::sign)'s tag over the same input; compared in
    /// constant time.
    pub fn verify(
        &self,
        tenant: &TenantId,
        purpose: KeyPurpose,
        parts: &[&[u8]],
        tag: &str,
    ) -> bool {
        match (unhex(tag), self.mac(tenant, purpose, parts)) {
            (Some(tag), Some(mac)) => mac.verify_slice(&tag).is_ok(),
            _ => false,
        }
    }
}

/// Lower-case hex to bytes; anything else is `None`.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2)
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse_text(s).expect("a text key")
    }

    #[test]
    fn keys_differ_by_tenant_purpose_kind_and_master() -> Result<(), MasterKeyError> {
        let master = MasterKey::new(&[7; 32])?;
        let other = MasterKey::new(&[8; 32])?;
        let a = tenant("acme");
        let b = tenant("globex");
        let int = TenantId::from_i64(42).expect("positive");
        let text42 = tenant("42");
        let keys = [
            master.derive(&a, KeyPurpose::Token),
            master.derive(&b, KeyPurpose::Token),
            master.derive(&a, KeyPurpose::JobEnvelope),
            master.derive(&a, KeyPurpose::SignedUrl),
            other.derive(&a, KeyPurpose::Token),
            master.derive(&int, KeyPurpose::Token),
            master.derive(&text42, KeyPurpose::Token),
        ];
        for (i, x) in keys.iter().enumerate() {
            assert_ne!(x, &[0; 32]);
            for y in &keys[i + 1..] {
                assert_ne!(x, y);
            }
        }
        // Deterministic.
        assert_eq!(keys[0], master.derive(&a, KeyPurpose::Token));
        Ok(())
    }

    #[test]
    fn tags_bind_tenant_purpose_and_every_part() -> Result<(), MasterKeyError> {
        let m = MasterKey::new(&[6; 32])?;
        let (a, b) = (tenant("a"), tenant("b"));
        let tag = m.sign(&a, KeyPurpose::SignedUrl, &[b"GET", b"x/y"]);
        assert_eq!(tag.len(), 64);
        assert!(m.verify(&a, KeyPurpose::SignedUrl, &[b"GET", b"x/y"], &tag));
        for (t, p, parts) in [
            (&b, KeyPurpose::SignedUrl, [b"GET".as_slice(), b"x/y"]),
            (&a, KeyPurpose::JobEnvelope, [b"GET", b"x/y"]),
            (&a, KeyPurpose::SignedUrl, [b"GETx", b"/y"]),
            (&a, KeyPurpose::SignedUrl, [b"PUT", b"x/y"]),
        ] {
            assert!(!m.verify(t, p, &parts, &tag));
        }
        assert!(!m.verify(
            &a,
            KeyPurpose::SignedUrl,
            &[b"GET", b"x/y"],
            &tag.to_uppercase()
        ));
        assert!(!m.verify(&a, KeyPurpose::SignedUrl, &[b"GET", b"x/y"], &tag[1..]));
        assert!(!m.verify(&a, KeyPurpose::SignedUrl, &[b"GET", b"x/y"], ""));
        let mut flipped = tag.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap_or_default();
        assert!(!m.verify(&a, KeyPurpose::SignedUrl, &[b"GET", b"x/y"], &flipped));
        Ok(())
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(
            MasterKey::new(&[1; 31]).map(|_| ()),
            Err(MasterKeyError::TooShort(31))
        );
        assert_eq!(
            format!("{:?}", MasterKey::new(&[1; 32])),
            "Ok(MasterKey(..))"
        );
    }

    #[test]
    fn matches_rfc5869_hkdf_sha256() -> Result<(), MasterKeyError> {
        // The derivation is plain HKDF-SHA256: recompute it independently.
        let master = MasterKey::new(&[3; 40])?;
        let t = tenant("acme");
        let hk = Hkdf::<Sha256>::new(Some(b"tenant-db key derivation v1"), &[3; 40]);
        let mut expected = [0u8; 32];
        let info = [b"token\0text\0".as_slice(), &4u64.to_be_bytes(), b"acme"].concat();
        assert!(hk.expand(&info, &mut expected).is_ok());
        assert_eq!(master.derive(&t, KeyPurpose::Token), expected);
        Ok(())
    }
}
