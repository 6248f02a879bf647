//! [`TokenVerifier`]: a signed token (JWT) in, a verified [`Tenant`] out.
//!
//! Verification is `jsonwebtoken`'s; tenant-db decides which key and algorithm may verify a
//! token, and reads the tenant claim strictly:
//!
//! - every key pins its algorithm; the token's `alg` must be that algorithm (`none` and
//!   algorithm confusion, an RSA public key used as an HMAC secret, are refused);
//! - the key is chosen by the token's `kid` (a token without `kid` only matches the one key
//!   without one); a key can be retired at a cut-off, so that after a rotation the old and the new
//!   key are both accepted until then, and only the new one after;
//! - `exp` is required; `exp` and `nbf` are checked with a leeway of at most five minutes; `iss`
//!   and `aud` when configured;
//! - with [`VerifyingKey::per_tenant`], each tenant's tokens are signed with that tenant's own
//!   key, derived from a master secret ([`MasterKey`]): a token for tenant B signed with tenant
//!   A's key is refused, and a leaked tenant key forges tokens for that tenant only.

use super::keys::{KeyPurpose, MasterKey};
use super::{Provenance, Tenant};
use crate::{KeyKind, ParseTenantIdError, TenantId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::time::{Duration, SystemTime};

/// The largest leeway accepted for `exp` and `nbf`.
pub const MAX_LEEWAY: Duration = Duration::from_secs(300);

/// The tenant claim's default name.
pub const DEFAULT_TENANT_CLAIM: &str = "tenant_id";

/// The algorithms a key can pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenAlgorithm {
    /// HMAC with SHA-256, a shared secret.
    Hs256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl TokenAlgorithm {
    fn jwt(self) -> Algorithm {
        match self {
            TokenAlgorithm::Hs256 => Algorithm::HS256,
            TokenAlgorithm::Rs256 => Algorithm::RS256,
            TokenAlgorithm::Es256 => Algorithm::ES256,
            TokenAlgorithm::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// Why a token was refused. None of them says more than the category: no key material, no
/// claim values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not a well-formed token (three base64url parts, a JSON header and claims).
    #[error("the token is malformed")]
    Malformed,
    /// No configured key has the token's `kid` (or the token has none and several keys do).
    #[error("no key verifies tokens with this key id")]
    UnknownKey,
    /// The token's `alg` is not the algorithm its key is pinned to.
    #[error("the token's algorithm is not its key's")]
    AlgorithmNotAllowed,
    /// The key was retired (its cut-off has passed).
    #[error("the token's key is retired")]
    KeyRetired,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `exp` has passed (beyond the leeway), or is missing.
    #[error("the token has expired or has no expiry")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not name the configured audience.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// The token names no tenant.
    #[error("the token has no tenant claim")]
    MissingTenantClaim,
    /// The tenant claim is not a tenant id of the configured kind.
    #[error("the token's tenant claim is not a valid tenant id: {0}")]
    InvalidTenantClaim(ParseTenantIdError),
}

/// Why a verifier could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifierConfigError {
    /// No key was given.
    #[error("a token verifier needs at least one key")]
    NoKeys,
    /// Two keys have the same `kid` (or more than one key has none).
    #[error("two keys have the same key id ({0:?})")]
    DuplicateKeyId(Option<String>),
    /// The leeway is above [`MAX_LEEWAY`].
    #[error("the leeway is above five minutes")]
    LeewayTooLarge,
    /// A key could not be read (a PEM that is not a key of its algorithm).
    #[error("the key for {0:?} could not be read")]
    BadKey(TokenAlgorithm),
    /// The tenant claim's name is empty.
    #[error("the tenant claim's name is empty")]
    EmptyClaimName,
}

/// Where a key's verifying material comes from.
#[derive(Clone)]
enum Material {
    /// One key for every tenant.
    Shared(DecodingKey),
    /// A key per tenant, derived from a master secret (HS256).
    PerTenant(MasterKey),
}

/// One key a [`TokenVerifier`] accepts: its algorithm (pinned), its material, its `kid`, and
/// when it is retired.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: Option<String>,
    algorithm: TokenAlgorithm,
    material: Material,
    retire_at: Option<SystemTime>,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field(
                "per_tenant",
                &matches!(self.material, Material::PerTenant(_)),
            )
            .field("retire_at", &self.retire_at)
            .finish()
    }
}

impl VerifyingKey {
    /// HS256 with one secret shared by every tenant. Prefer [`per_tenant`](Self::per_tenant):
    /// a leaked shared secret forges tokens for every tenant.
    pub fn hs256(secret: &[u8]) -> Self {
        Self::shared(TokenAlgorithm::Hs256, DecodingKey::from_secret(secret))
    }

    /// HS256 with a key per tenant, derived from `master` ([`KeyPurpose::Token`]).
    pub fn per_tenant(master: MasterKey) -> Self {
        VerifyingKey {
            kid: None,
            algorithm: TokenAlgorithm::Hs256,
            material: Material::PerTenant(master),
            retire_at: None,
        }
    }

    /// RS256 with an RSA public key in PEM.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self, VerifierConfigError> {
        DecodingKey::from_rsa_pem(pem)
            .map(|k| Self::shared(TokenAlgorithm::Rs256, k))
            .map_err(|_| VerifierConfigError::BadKey(TokenAlgorithm::Rs256))
    }

    /// ES256 with a P-256 public key in PEM.
    pub fn es256_pem(pem: &[u8]) -> Result<Self, VerifierConfigError> {
        DecodingKey::from_ec_pem(pem)
            .map(|k| Self::shared(TokenAlgorithm::Es256, k))
            .map_err(|_| VerifierConfigError::BadKey(TokenAlgorithm::Es256))
    }

    /// EdDSA with an Ed25519 public key in PEM.
    pub fn eddsa_pem(pem: &[u8]) -> Result<Self, VerifierConfigError> {
        DecodingKey::from_ed_pem(pem)
            .map(|k| Self::shared(TokenAlgorithm::EdDsa, k))
            .map_err(|_| VerifierConfigError::BadKey(TokenAlgorithm::EdDsa))
    }

    fn shared(algorithm: TokenAlgorithm, key: DecodingKey) -> Self {
        VerifyingKey {
            kid: None,
            algorithm,
            material: Material::Shared(key),
            retire_at: None,
        }
    }

    /// This key answers tokens whose header has `kid`.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// This key is refused from `cut_off` on: after a rotation, the old key stays valid until
    /// then, beside the new one.
    pub fn retire_at(mut self, cut_off: SystemTime) -> Self {
        self.retire_at = Some(cut_off);
        self
    }
}

/// Builds a [`TokenVerifier`]; [`build`](TokenVerifierBuilder::build) checks the settings.
#[derive(Debug, Clone)]
pub struct TokenVerifierBuilder(TokenVerifier);

impl TokenVerifierBuilder {
    /// Accept tokens verified by `key`.
    pub fn key(mut self, key: VerifyingKey) -> Self {
        self.0.keys.push(key);
        self
    }

    /// Require `iss` to be `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.0.issuer = Some(issuer.into());
        self
    }

    /// Require `aud` to name `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.0.audience = Some(audience.into());
        self
    }

    /// Leeway for `exp` and `nbf` (default 30 seconds, at most [`MAX_LEEWAY`]).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.0.leeway = leeway;
        self
    }

    /// The tenant claim's name (default [`DEFAULT_TENANT_CLAIM`]).
    pub fn tenant_claim(mut self, name: impl Into<String>) -> Self {
        self.0.claim = name.into();
        self
    }

    /// The verifier, or why this configuration is refused.
    pub fn build(self) -> Result<TokenVerifier, VerifierConfigError> {
        let v = self.0;
        if v.keys.is_empty() {
            return Err(VerifierConfigError::NoKeys);
        }
        for (i, key) in v.keys.iter().enumerate() {
            if v.keys[i + 1..].iter().any(|other| other.kid == key.kid) {
                return Err(VerifierConfigError::DuplicateKeyId(key.kid.clone()));
            }
        }
        if v.leeway > MAX_LEEWAY {
            return Err(VerifierConfigError::LeewayTooLarge);
        }
        if v.claim.is_empty() {
            return Err(VerifierConfigError::EmptyClaimName);
        }
        Ok(v)
    }
}

/// Verifies tokens and yields the [`Tenant`] they name (see the module docs).
///
/// ```
/// use tenant_db::identity::{KeyPurpose, MasterKey, TokenVerifier, VerifyingKey};
/// use tenant_db::{KeyKind, Provenance, TenantId};
///
/// let master = MasterKey::new(&[42; 32])?;
/// let verifier = TokenVerifier::builder(KeyKind::Text)
///     .key(VerifyingKey::per_tenant(master.clone()))
///     .issuer("https://auth.example")
///     .audience("billing")
///     .build()?;
///
/// // The identity provider signs acme's token with acme's key.
/// let acme = TenantId::parse_text("acme")?;
/// let claims = serde_json::json!({
///     "tenant_id": "acme", "iss": "https://auth.example", "aud": "billing",
///     "exp": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 600,
/// });
/// let token = jsonwebtoken::encode(
///     &jsonwebtoken::Header::default(),
///     &claims,
///     &jsonwebtoken::EncodingKey::from_secret(&master.derive(&acme, KeyPurpose::Token)),
/// )?;
///
/// let verified = verifier.verify(&token)?;
/// assert_eq!(verified.tenant().id(), acme);
/// assert_eq!(verified.tenant().provenance(), Provenance::Token);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    kind: KeyKind,
    keys: Vec<VerifyingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    claim: String,
}

/// A verified token: the tenant it names, and its claims.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    tenant: Tenant,
    claims: Map<String, Value>,
}

impl VerifiedToken {
    /// The verified tenant.
    pub fn tenant(&self) -> Tenant {
        self.tenant
    }

    /// All the token's claims (`sub`, roles, …), verified with the rest.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
}

impl TokenVerifier {
    /// A verifier for tenants of `kind`, to configure.
    pub fn builder(kind: KeyKind) -> TokenVerifierBuilder {
        TokenVerifierBuilder(TokenVerifier {
            kind,
            keys: Vec::new(),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(30),
            claim: DEFAULT_TENANT_CLAIM.to_string(),
        })
    }

    /// Verifies `token` and returns the tenant it names.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == header.kid)
            .ok_or(TokenError::UnknownKey)?;
        if header.alg != key.algorithm.jwt() {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        if key
            .retire_at
            .is_some_and(|cut_off| SystemTime::now() >= cut_off)
        {
            return Err(TokenError::KeyRetired);
        }
        let decoding = match &key.material {
            Material::Shared(decoding) => decoding.clone(),
            Material::PerTenant(master) => {
                // The key depends on the tenant the token names: read that claim first, then
                // verify the whole token with that tenant's key (a token that names B verifies
                // only with B's key).
                let unverified = self.unverified_claims(token, key.algorithm)?;
                let tenant = self.tenant_of(&unverified)?;
                DecodingKey::from_secret(&master.derive(&tenant, KeyPurpose::Token))
            }
        };
        let claims = jsonwebtoken::decode::<Map<String, Value>>(
            token,
            &decoding,
            &self.validation(key.algorithm),
        )
        .map_err(|e| map_error(e.kind()))?
        .claims;
        let tenant = self.tenant_of(&claims)?;
        Ok(VerifiedToken {
            tenant: Tenant::verified(tenant, Provenance::Token),
            claims,
        })
    }

    fn validation(&self, algorithm: TokenAlgorithm) -> Validation {
        let mut v = Validation::new(algorithm.jwt());
        v.leeway = self.leeway.as_secs();
        v.validate_exp = true;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if let Some(issuer) = &self.issuer {
            v.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.audience {
            Some(audience) => {
                v.set_audience(&[audience]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        v
    }

    /// The claims before the signature is checked: only to choose a per-tenant key.
    fn unverified_claims(
        &self,
        token: &str,
        algorithm: TokenAlgorithm,
    ) -> Result<Map<String, Value>, TokenError> {
        let mut v = Validation::new(algorithm.jwt());
        v.insecure_disable_signature_validation();
        v.validate_exp = false;
        v.validate_aud = false;
        v.set_required_spec_claims::<&str>(&[]);
        jsonwebtoken::decode::<Map<String, Value>>(token, &DecodingKey::from_secret(&[]), &v)
            .map(|data| data.claims)
            .map_err(|_| TokenError::Malformed)
    }

    /// The tenant claim, parsed strictly: a string exactly as the tenant id prints (no
    /// whitespace), or, for integer keys, a JSON integer.
    fn tenant_of(&self, claims: &Map<String, Value>) -> Result<TenantId, TokenError> {
        let invalid = TokenError::InvalidTenantClaim;
        match claims.get(&self.claim) {
            None | Some(Value::Null) => Err(TokenError::MissingTenantClaim),
            Some(Value::String(s)) => {
                let id = TenantId::parse_as(self.kind, s).map_err(invalid)?;
                if self.kind != KeyKind::Uuid && id.to_string() != *s {
                    return Err(invalid(ParseTenantIdError::InvalidCharacter(0)));
                }
                if s.trim() != s {
                    return Err(invalid(ParseTenantIdError::InvalidCharacter(0)));
                }
                Ok(id)
            }
            Some(Value::Number(n)) if self.kind == KeyKind::Int => match n.as_i64() {
                Some(id) => TenantId::from_i64(id).map_err(invalid),
                None => Err(invalid(ParseTenantIdError::NotAnInteger)),
            },
            Some(_) => Err(invalid(match self.kind {
                KeyKind::Int => ParseTenantIdError::NotAnInteger,
                KeyKind::Uuid => ParseTenantIdError::NotAUuid,
                _ => ParseTenantIdError::InvalidCharacter(0),
            })),
        }
    }
}

fn map_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => TokenError::Expired,
        ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => TokenError::WrongIssuer,
        ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => TokenError::WrongAudience,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm => TokenError::AlgorithmNotAllowed,
        _ => TokenError::Malformed,
    }
}
