//! Caller authentication: `authorization: Bearer <JWT>`, HS256 with
//! a configured secret for development, RS256 or EdDSA public keys in production. Claims
//! `user_id` (positive) and `role_level` (0 user, 50 merchant staff, 100 admin).

use economy_kit::identity::Caller;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataMap;

use crate::error::GatewayError;

/// `[gateway.auth]` configuration. Empty strings disable a key kind.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// HS256 shared secret (development). Never logged.
    pub hs256_secret: String,
    /// RS256 public key, PEM.
    pub rs256_public_key_pem: String,
    /// EdDSA (Ed25519) public key, PEM.
    pub eddsa_public_key_pem: String,
    /// Required `iss`, when set.
    pub issuer: String,
    /// Required `aud`, when set.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: String::new(),
            rs256_public_key_pem: String::new(),
            eddsa_public_key_pem: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 5,
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthConfig")
            .field("hs256_secret", &if self.hs256_secret.is_empty() { "" } else { "<redacted>" })
            .field("rs256", &!self.rs256_public_key_pem.is_empty())
            .field("eddsa", &!self.eddsa_public_key_pem.is_empty())
            .finish()
    }
}

/// Token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Positive user id.
    pub user_id: i64,
    /// Role level, 0..=100.
    #[serde(default)]
    pub role_level: i32,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Not valid before, seconds since the epoch (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default)]
    pub iat: u64,
}

/// Verifies bearer tokens.
pub struct Authenticator {
    keys: Vec<(Algorithm, DecodingKey)>,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl Authenticator {
    /// Builds the verifier; fails when no key is configured or a PEM does not parse.
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let mut keys = Vec::new();
        if !config.hs256_secret.is_empty() {
            anyhow::ensure!(config.hs256_secret.len() >= 16, "gateway.auth.hs256_secret must be at least 16 bytes");
            keys.push((Algorithm::HS256, DecodingKey::from_secret(config.hs256_secret.as_bytes())));
        }
        if !config.rs256_public_key_pem.is_empty() {
            keys.push((Algorithm::RS256, DecodingKey::from_rsa_pem(config.rs256_public_key_pem.as_bytes())?));
        }
        if !config.eddsa_public_key_pem.is_empty() {
            keys.push((Algorithm::EdDSA, DecodingKey::from_ed_pem(config.eddsa_public_key_pem.as_bytes())?));
        }
        anyhow::ensure!(!keys.is_empty(), "configure gateway.auth.hs256_secret or a public key");
        Ok(Self {
            keys,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// The caller named by the bearer token in `metadata`.
    ///
    /// The scheme is case-insensitive (`Bearer`, `bearer`; RFC 7235). `exp` is required;
    /// `exp` and `nbf` (when present) are checked with `leeway_secs` of tolerance
    /// (RFC 7519 §4.1.4-5).
    ///
    /// Errors (`UNAUTHENTICATED` once a status): `TokenMissing`, `TokenExpired`,
    /// `TokenNotYetValid`, `TokenInvalid` (malformed, forged, unknown algorithm, bad claims).
    pub fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, GatewayError> {
        let token = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or(GatewayError::TokenMissing)?;
        let invalid = || GatewayError::TokenInvalid;
        let header = decode_header(token).map_err(|_| invalid())?;
        let (algorithm, key) = self.keys.iter().find(|(algorithm, _)| *algorithm == header.alg).ok_or_else(invalid)?;
        let mut validation = Validation::new(*algorithm);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        if !self.issuer.is_empty() {
            validation.set_issuer(&[&self.issuer]);
        }
        if !self.audience.is_empty() {
            validation.set_audience(&[&self.audience]);
        }
        let claims = decode::<Claims>(token, key, &validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => GatewayError::TokenExpired,
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => GatewayError::TokenNotYetValid,
                _ => invalid(),
            })?
            .claims;
        if claims.user_id <= 0 || !(0..=100).contains(&claims.role_level) {
            return Err(invalid());
        }
        Ok(Caller::user(claims.user_id, claims.role_level))
    }
}

/// The token of an `authorization` value `<scheme> <token>` whose scheme is `Bearer` in
/// any case.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim_start();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Mints an HS256 development token valid for `ttl_secs`.
pub fn mint_hs256(secret: &str, user_id: i64, role_level: i32, ttl_secs: u64) -> anyhow::Result<String> {
    let now = u64::try_from(economy_kit::time::now_millis() / 1000)?;
    let claims = Claims { user_id, role_level, exp: now + ttl_secs, nbf: None, iat: now };
    Ok(encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

#[cfg(test)]
mod tests {
    use tonic::Status;

    use super::*;

    const SECRET: &str = "gateway-test-secret-123";

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig { hs256_secret: SECRET.into(), ..AuthConfig::default() }).expect("authenticator")
    }

    fn metadata(token: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        metadata
    }

    fn reason(result: Result<Caller, GatewayError>) -> Option<String> {
        economy_kit::error::reason(&Status::from(result.expect_err("rejected")))
    }

    #[test]
    fn valid_tokens_name_the_caller() {
        let token = mint_hs256(SECRET, 42, 50, 60).expect("token");
        assert_eq!(authenticator().authenticate(&metadata(&token)).expect("caller"), Caller::user(42, 50));
    }

    #[test]
    fn missing_forged_expired_and_malformed_tokens_are_rejected() {
        let auth = authenticator();
        assert_eq!(reason(auth.authenticate(&MetadataMap::new())).as_deref(), Some("TOKEN_MISSING"));
        let forged = mint_hs256("another-secret-0123456", 42, 100, 60).expect("token");
        assert_eq!(reason(auth.authenticate(&metadata(&forged))).as_deref(), Some("TOKEN_INVALID"));
        assert_eq!(reason(auth.authenticate(&metadata("not.a.jwt"))).as_deref(), Some("TOKEN_INVALID"));
        let now = u64::try_from(economy_kit::time::now_millis() / 1000).expect("now");
        let expired = Claims { user_id: 1, role_level: 0, exp: now - 3600, nbf: None, iat: now - 7200 };
        let expired = encode(&Header::new(Algorithm::HS256), &expired, &EncodingKey::from_secret(SECRET.as_bytes()))
            .expect("token");
        assert_eq!(reason(auth.authenticate(&metadata(&expired))).as_deref(), Some("TOKEN_EXPIRED"));
        let bad_role = mint_hs256(SECRET, 1, 500, 60).expect("token");
        assert_eq!(reason(auth.authenticate(&metadata(&bad_role))).as_deref(), Some("TOKEN_INVALID"));
    }

    fn signed(claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("token")
    }

    #[test]
    fn not_before_and_expiry_allow_only_the_leeway() {
        let auth = authenticator();
        let now = u64::try_from(economy_kit::time::now_millis() / 1000).expect("now");
        let claims = |nbf: Option<u64>, exp: u64| Claims { user_id: 1, role_level: 0, exp, nbf, iat: now };
        let future = signed(&claims(Some(now + 60), now + 120));
        assert_eq!(reason(auth.authenticate(&metadata(&future))).as_deref(), Some("TOKEN_NOT_YET_VALID"));
        assert!(auth.authenticate(&metadata(&signed(&claims(Some(now + 2), now + 120)))).is_ok());
        assert!(auth.authenticate(&metadata(&signed(&claims(Some(now - 1), now + 120)))).is_ok());
        let just_expired = signed(&claims(None, now - 30));
        assert_eq!(reason(auth.authenticate(&metadata(&just_expired))).as_deref(), Some("TOKEN_EXPIRED"));
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        let auth = authenticator();
        let token = mint_hs256(SECRET, 42, 0, 60).expect("token");
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let mut headers = MetadataMap::new();
            headers.insert("authorization", format!("{scheme} {token}").parse().expect("ascii"));
            assert_eq!(auth.authenticate(&headers).expect("caller"), Caller::user(42, 0), "{scheme}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", &token] {
            let mut headers = MetadataMap::new();
            headers.insert("authorization", value.parse().expect("ascii"));
            assert_eq!(reason(auth.authenticate(&headers)).as_deref(), Some("TOKEN_MISSING"), "{value}");
        }
    }

    #[test]
    fn a_key_is_required() {
        assert!(Authenticator::new(&AuthConfig::default()).is_err());
        assert!(!format!("{:?}", AuthConfig { hs256_secret: SECRET.into(), ..AuthConfig::default() }).contains(SECRET));
    }
}
