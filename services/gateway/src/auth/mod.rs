//! Caller authentication (docs/gateway.md, "Authentication"): `authorization: Bearer
//! <JWT>`, verified with the identity provider's JWKS (`jwks_url`: RS256, ES256, EdDSA and
//! their families), static public keys (RS256, ES256, EdDSA PEM) or, for development, an
//! HS256 secret; `iss`, `aud` (when configured), `exp` and `nbf` are checked; the claims
//! are mapped to the caller by [`claims::ClaimMapping`].

pub mod claims;
pub mod jwks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use economy_kit::identity::Caller;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;

use crate::auth::claims::ClaimMapping;
use crate::auth::jwks::{Jwks, JwksSettings};
use crate::error::GatewayError;

/// `[gateway.auth]` configuration. Empty strings disable a key kind; at least one of
/// `hs256_secret`, a public key or `jwks_url` is required.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AuthConfig {
    /// HS256 shared secret (development; at least 16 bytes). Never logged.
    pub hs256_secret: String,
    /// RS256 public key, PEM.
    pub rs256_public_key_pem: String,
    /// ES256 (P-256) public key, PEM.
    pub es256_public_key_pem: String,
    /// EdDSA (Ed25519) public key, PEM.
    pub eddsa_public_key_pem: String,
    /// The identity provider's JWKS URL (e.g. Keycloak's
    /// `https://idp/realms/<realm>/protocol/openid-connect/certs`).
    pub jwks_url: String,
    /// Period of the JWKS refresh, seconds (default 300).
    pub jwks_refresh_secs: u64,
    /// Least time between two JWKS fetches caused by a token with an unknown `kid`,
    /// seconds (default 30; 0 refetches for every such token, one fetch at a time).
    pub jwks_min_refresh_secs: u64,
    /// Deadline of one JWKS fetch, seconds (default 5).
    pub jwks_timeout_secs: u64,
    /// PEM CA certificates trusted for an `https://` `jwks_url` besides the system's roots
    /// (a provider behind a private CA); empty: the system's roots only.
    pub jwks_ca_file: String,
    /// Required `iss`, when set.
    pub issuer: String,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, seconds.
    pub leeway_secs: u64,
    /// Claim holding the user id (a positive integer or decimal string); a dotted path
    /// reaches into nested objects. Default `user_id`.
    pub user_id_claim: String,
    /// Claim holding the numeric role level (0..=100), used when `role_list_claim` is
    /// empty. Default `role_level`.
    pub role_claim: String,
    /// Claim holding a list of role names (e.g. `realm_access.roles`, `roles`); when set,
    /// the role level is the highest `role_map` value among them (0 if none is mapped).
    pub role_list_claim: String,
    /// Role name -> role level (0..=100), for `role_list_claim`.
    pub role_map: BTreeMap<String, i32>,
}

/// The most `leeway_secs` may be: a tolerance for clock skew, seconds.
const MAX_LEEWAY_SECS: u64 = 300;

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            hs256_secret: String::new(),
            rs256_public_key_pem: String::new(),
            es256_public_key_pem: String::new(),
            eddsa_public_key_pem: String::new(),
            jwks_url: String::new(),
            jwks_refresh_secs: 300,
            jwks_min_refresh_secs: 30,
            jwks_timeout_secs: 5,
            jwks_ca_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_secs: 5,
            user_id_claim: "user_id".into(),
            role_claim: "role_level".into(),
            role_list_claim: String::new(),
            role_map: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuthConfig")
            .field("hs256_secret", &if self.hs256_secret.is_empty() { "" } else { "<redacted>" })
            .field("rs256", &!self.rs256_public_key_pem.is_empty())
            .field("es256", &!self.es256_public_key_pem.is_empty())
            .field("eddsa", &!self.eddsa_public_key_pem.is_empty())
            .field("jwks_url", &self.jwks_url)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("user_id_claim", &self.user_id_claim)
            .field("role_claim", &self.role_claim)
            .field("role_list_claim", &self.role_list_claim)
            .field("role_map", &self.role_map)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// The claim mapping of this configuration.
    pub fn claim_mapping(&self) -> ClaimMapping {
        ClaimMapping {
            user_id_claim: self.user_id_claim.clone(),
            role_claim: self.role_claim.clone(),
            role_list_claim: self.role_list_claim.clone(),
            role_map: self.role_map.clone(),
        }
    }

    fn jwks_settings(&self) -> Option<JwksSettings> {
        (!self.jwks_url.is_empty()).then(|| JwksSettings {
            url: self.jwks_url.clone(),
            refresh: Duration::from_secs(self.jwks_refresh_secs),
            min_refresh: Duration::from_secs(self.jwks_min_refresh_secs),
            timeout: Duration::from_secs(self.jwks_timeout_secs.max(1)),
            ca_file: (!self.jwks_ca_file.is_empty()).then(|| self.jwks_ca_file.clone().into()),
        })
    }
}

/// The claims of a development token (`mint_hs256`); verified tokens are read through
/// the configured [`ClaimMapping`] instead.
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
    /// Configured keys: the HS256 secret and the PEM public keys.
    keys: Vec<(Algorithm, DecodingKey)>,
    jwks: Option<Arc<Jwks>>,
    mapping: ClaimMapping,
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl Authenticator {
    /// Builds the verifier (the JWKS, if any, is fetched by [`Authenticator::start`]).
    /// Fails, naming the setting, when no key source is configured, a PEM does not parse,
    /// the HS256 secret is shorter than 16 bytes or the claim mapping is invalid.
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let keys = static_keys(config)?;
        anyhow::ensure!(
            config.leeway_secs <= MAX_LEEWAY_SECS,
            "gateway.auth.leeway_secs is at most {MAX_LEEWAY_SECS} (clock skew, not token lifetime)"
        );
        anyhow::ensure!(
            config.jwks_ca_file.is_empty() || config.jwks_url.starts_with("https://"),
            "gateway.auth.jwks_ca_file is set, so gateway.auth.jwks_url must be https://"
        );
        let jwks = config.jwks_settings().map(Jwks::new).transpose()?.map(Arc::new);
        anyhow::ensure!(
            !keys.is_empty() || jwks.is_some(),
            "configure gateway.auth.jwks_url, a public key (gateway.auth.rs256_public_key_pem, \
             es256_public_key_pem, eddsa_public_key_pem) or gateway.auth.hs256_secret"
        );
        let mapping = config.claim_mapping();
        mapping.check()?;
        Ok(Self {
            keys,
            jwks,
            mapping,
            issuer: config.issuer.clone(),
            audience: config.audience.clone(),
            leeway_secs: config.leeway_secs,
        })
    }

    /// Fetches the JWKS, if configured (a failure is logged, not fatal: tokens of its keys
    /// are refused until a later fetch succeeds), and refreshes it until `shutdown`.
    pub async fn start(&self, shutdown: CancellationToken) {
        if let Some(jwks) = &self.jwks {
            jwks.clone().start(shutdown).await;
        }
    }

    /// The caller named by the bearer token in `metadata` (its user id also goes to the
    /// request's access line, `economy_kit::observe::record_user`).
    ///
    /// The scheme is case-insensitive (`Bearer`, `bearer`; RFC 7235). The key is chosen by
    /// the header's `alg` and `kid`. `exp` is required; `exp` and `nbf` (when present) are
    /// checked with `leeway_secs` of tolerance (RFC 7519 §4.1.4-5); `iss` and `aud` when
    /// configured.
    ///
    /// Errors (`UNAUTHENTICATED` once a status): `TokenMissing`, `TokenExpired`,
    /// `TokenNotYetValid`, `TokenKeyUnknown` (a `kid` not in the JWKS, even after a
    /// refresh), `TokenClaimInvalid` (a claim that does not map to a caller, or a wrong or
    /// missing `iss`, `aud`, `exp`), `TokenInvalid` (malformed, forged, unknown algorithm).
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, GatewayError> {
        let token = metadata
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token)
            .ok_or(GatewayError::TokenMissing)?;
        let header = decode_header(token).map_err(|_| GatewayError::TokenInvalid)?;
        let keys = self.keys_for(header.kid.as_deref(), header.alg).await;
        if keys.is_empty() {
            return Err(match (&self.jwks, &header.kid) {
                (Some(_), Some(_)) if header.alg != Algorithm::HS256 => GatewayError::TokenKeyUnknown,
                _ => GatewayError::TokenInvalid,
            });
        }
        let validation = self.validation(header.alg);
        let mut outcome = Err(GatewayError::TokenInvalid);
        for key in &keys {
            match decode::<serde_json::Value>(token, key, &validation) {
                Ok(data) => {
                    let caller = self.mapping.caller(&data.claims)?;
                    if let Some(user_id) = caller.user_id() {
                        economy_kit::observe::record_user(user_id);
                    }
                    return Ok(caller);
                }
                Err(error) if *error.kind() == ErrorKind::InvalidSignature => {}
                Err(error) => outcome = Err(refusal(error.kind())),
            }
        }
        outcome
    }

    /// The configured keys of `alg`, then the JWKS keys for `kid`.
    async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Vec<DecodingKey> {
        let mut keys: Vec<DecodingKey> =
            self.keys.iter().filter(|(algorithm, _)| *algorithm == alg).map(|(_, key)| key.clone()).collect();
        if let Some(jwks) = &self.jwks
            && alg != Algorithm::HS256
        {
            keys.extend(jwks.keys_for(kid, alg).await.into_iter().map(|signing| signing.key));
        }
        keys
    }

    fn validation(&self, alg: Algorithm) -> Validation {
        let mut validation = Validation::new(alg);
        let mut required = vec!["exp"];
        validation.validate_nbf = true;
        validation.leeway = self.leeway_secs;
        if !self.issuer.is_empty() {
            validation.set_issuer(&[&self.issuer]);
            required.push("iss");
        }
        if self.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[&self.audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation
    }
}

/// The refusal for a token whose signature verified but whose claims did not.
fn refusal(kind: &ErrorKind) -> GatewayError {
    match kind {
        ErrorKind::ExpiredSignature => GatewayError::TokenExpired,
        ErrorKind::ImmatureSignature => GatewayError::TokenNotYetValid,
        ErrorKind::InvalidIssuer => GatewayError::token_claim("iss"),
        ErrorKind::InvalidAudience => GatewayError::token_claim("aud"),
        ErrorKind::MissingRequiredClaim(claim) => GatewayError::token_claim(claim),
        _ => GatewayError::TokenInvalid,
    }
}

/// The configured HS256 secret and PEM public keys, each with its algorithm.
fn static_keys(config: &AuthConfig) -> anyhow::Result<Vec<(Algorithm, DecodingKey)>> {
    let mut keys = Vec::new();
    if !config.hs256_secret.is_empty() {
        anyhow::ensure!(config.hs256_secret.len() >= 16, "gateway.auth.hs256_secret must be at least 16 bytes");
        keys.push((Algorithm::HS256, DecodingKey::from_secret(config.hs256_secret.as_bytes())));
    }
    let pem = |setting: &str, pem: &str, parse: fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>| {
        parse(pem.as_bytes()).map_err(|error| anyhow::anyhow!("gateway.auth.{setting} does not parse: {error}"))
    };
    if !config.rs256_public_key_pem.is_empty() {
        keys.push((
            Algorithm::RS256,
            pem("rs256_public_key_pem", &config.rs256_public_key_pem, DecodingKey::from_rsa_pem)?,
        ));
    }
    if !config.es256_public_key_pem.is_empty() {
        keys.push((
            Algorithm::ES256,
            pem("es256_public_key_pem", &config.es256_public_key_pem, DecodingKey::from_ec_pem)?,
        ));
    }
    if !config.eddsa_public_key_pem.is_empty() {
        keys.push((
            Algorithm::EdDSA,
            pem("eddsa_public_key_pem", &config.eddsa_public_key_pem, DecodingKey::from_ed_pem)?,
        ));
    }
    Ok(keys)
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

    #[tokio::test]
    async fn valid_tokens_name_the_caller() {
        let token = mint_hs256(SECRET, 42, 50, 60).expect("token");
        assert_eq!(authenticator().authenticate(&metadata(&token)).await.expect("caller"), Caller::user(42, 50));
    }

    #[tokio::test]
    async fn missing_forged_expired_and_malformed_tokens_are_rejected() {
        let auth = authenticator();
        assert_eq!(reason(auth.authenticate(&MetadataMap::new()).await).as_deref(), Some("TOKEN_MISSING"));
        let forged = mint_hs256("another-secret-0123456", 42, 100, 60).expect("token");
        assert_eq!(reason(auth.authenticate(&metadata(&forged)).await).as_deref(), Some("TOKEN_INVALID"));
        assert_eq!(reason(auth.authenticate(&metadata("not.a.jwt")).await).as_deref(), Some("TOKEN_INVALID"));
        let now = u64::try_from(economy_kit::time::now_millis() / 1000).expect("now");
        let expired = Claims { user_id: 1, role_level: 0, exp: now - 3600, nbf: None, iat: now - 7200 };
        let expired = encode(&Header::new(Algorithm::HS256), &expired, &EncodingKey::from_secret(SECRET.as_bytes()))
            .expect("token");
        assert_eq!(reason(auth.authenticate(&metadata(&expired)).await).as_deref(), Some("TOKEN_EXPIRED"));
        let bad_role = mint_hs256(SECRET, 1, 500, 60).expect("token");
        assert_eq!(reason(auth.authenticate(&metadata(&bad_role)).await).as_deref(), Some("TOKEN_CLAIM_INVALID"));
    }

    fn signed(claims: &Claims) -> String {
        encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(SECRET.as_bytes())).expect("token")
    }

    #[tokio::test]
    async fn not_before_and_expiry_allow_only_the_leeway() {
        let auth = authenticator();
        let now = u64::try_from(economy_kit::time::now_millis() / 1000).expect("now");
        let claims = |nbf: Option<u64>, exp: u64| Claims { user_id: 1, role_level: 0, exp, nbf, iat: now };
        let future = signed(&claims(Some(now + 60), now + 120));
        assert_eq!(reason(auth.authenticate(&metadata(&future)).await).as_deref(), Some("TOKEN_NOT_YET_VALID"));
        assert!(auth.authenticate(&metadata(&signed(&claims(Some(now + 2), now + 120)))).await.is_ok());
        assert!(auth.authenticate(&metadata(&signed(&claims(Some(now - 1), now + 120)))).await.is_ok());
        let just_expired = signed(&claims(None, now - 30));
        assert_eq!(reason(auth.authenticate(&metadata(&just_expired)).await).as_deref(), Some("TOKEN_EXPIRED"));
    }

    #[tokio::test]
    async fn the_scheme_is_case_insensitive() {
        let auth = authenticator();
        let token = mint_hs256(SECRET, 42, 0, 60).expect("token");
        for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
            let mut headers = MetadataMap::new();
            headers.insert("authorization", format!("{scheme} {token}").parse().expect("ascii"));
            assert_eq!(auth.authenticate(&headers).await.expect("caller"), Caller::user(42, 0), "{scheme}");
        }
        for value in ["Basic abc", "Bearer", "Bearer ", &token] {
            let mut headers = MetadataMap::new();
            headers.insert("authorization", value.parse().expect("ascii"));
            assert_eq!(reason(auth.authenticate(&headers).await).as_deref(), Some("TOKEN_MISSING"), "{value}");
        }
    }

    #[test]
    fn a_key_is_required() {
        assert!(Authenticator::new(&AuthConfig::default()).is_err());
        assert!(!format!("{:?}", AuthConfig { hs256_secret: SECRET.into(), ..AuthConfig::default() }).contains(SECRET));
    }
}
