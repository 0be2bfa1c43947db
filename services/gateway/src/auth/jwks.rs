//! The identity provider's signing keys, from its JWKS (`gateway.auth.jwks_url`;
//! docs/gateway.md, "Authentication").
//!
//! The keys are fetched at start, then every `jwks_refresh_secs`, and again when a token
//! names a `kid` the cache does not hold — at most once per `jwks_min_refresh_secs`, and
//! one fetch at a time, so a flood of tokens with made-up key ids costs one request. A
//! fetch that fails (provider down, bad answer) keeps the cached keys; a provider that is
//! down at start leaves the cache empty until a fetch succeeds, and the gateway serves
//! meanwhile. Only signature keys of RSA, EC (P-256, P-384) and Ed25519 are kept: a
//! symmetric (`oct`) key or an encryption key in a JWKS is skipped.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Largest JWKS document accepted, bytes.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Where and how often to fetch the keys.
#[derive(Debug, Clone)]
pub struct JwksSettings {
    /// The JWKS document's URL (`https://…` or `http://…`).
    pub url: String,
    /// Period of the background refresh.
    pub refresh: Duration,
    /// Least time between two fetches caused by an unknown `kid`.
    pub min_refresh: Duration,
    /// Deadline of one fetch (connect and read).
    pub timeout: Duration,
    /// PEM CA certificates trusted for an `https://` URL besides the system's roots (a
    /// provider behind a private CA); `None`: the system's roots only.
    pub ca_file: Option<PathBuf>,
}

/// One verification key of the set.
#[derive(Clone)]
pub struct SigningKey {
    /// Its `kid`, if the JWKS names one.
    pub kid: Option<String>,
    /// The algorithms it verifies (its `alg` alone when the JWKS names one).
    pub algorithms: Vec<Algorithm>,
    /// The public key.
    pub key: DecodingKey,
}

/// The cached keys of one JWKS and the rules for fetching them again.
pub struct Jwks {
    settings: JwksSettings,
    client: reqwest::Client,
    keys: RwLock<Arc<Vec<SigningKey>>>,
    /// When the last fetch started (successful or not); held during a fetch.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    /// An empty cache for `settings`; nothing is fetched yet. Fails, naming the setting,
    /// when `ca_file` cannot be read or holds no PEM certificate, or the HTTP client cannot
    /// be built.
    pub fn new(settings: JwksSettings) -> anyhow::Result<Self> {
        let mut builder = reqwest::Client::builder().timeout(settings.timeout).connect_timeout(settings.timeout);
        if let Some(path) = &settings.ca_file {
            for certificate in ca_certificates(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().context("cannot build the JWKS client")?;
        Ok(Self { settings, client, keys: RwLock::new(Arc::new(Vec::new())), last_fetch: Default::default() })
    }

    /// The keys that may verify a token with header `alg` and `kid`. A `kid` the cache does
    /// not hold triggers one refresh (unless one happened within `min_refresh`); a token
    /// without `kid` may be verified by any key of its algorithm.
    pub async fn keys_for(&self, kid: Option<&str>, alg: Algorithm) -> Vec<SigningKey> {
        let found = matching(&self.current(), kid, alg);
        if !found.is_empty() || kid.is_none() || self.knows(kid) {
            return found;
        }
        self.refresh_unless_recent().await;
        matching(&self.current(), kid, alg)
    }

    /// Fetches the keys now and replaces the cache; on failure the cache stays as it was.
    /// Returns how many keys the set holds.
    pub async fn refresh(&self) -> anyhow::Result<usize> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch_and_replace().await
    }

    /// Fetches at start (logging a failure: the gateway starts anyway), then every
    /// `refresh` until `shutdown`.
    pub async fn start(self: Arc<Self>, shutdown: CancellationToken) {
        self.refresh_logged().await;
        let period = self.settings.refresh.max(Duration::from_secs(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(period) => self.refresh_logged().await,
                }
            }
        });
    }

    async fn refresh_logged(&self) {
        match self.refresh().await {
            Ok(count) => tracing::debug!(url = %self.settings.url, keys = count, "JWKS fetched"),
            Err(error) => {
                tracing::warn!(url = %self.settings.url, error = format!("{error:#}"), "JWKS fetch failed; keeping the cached keys")
            }
        }
    }

    /// One refresh for an unknown `kid`, unless a fetch started within `min_refresh`
    /// (including one that ran while this caller waited for the lock).
    async fn refresh_unless_recent(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.settings.min_refresh) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch_and_replace().await {
            tracing::warn!(url = %self.settings.url, error = format!("{error:#}"), "JWKS refresh for an unknown kid failed");
        }
    }

    async fn fetch_and_replace(&self) -> anyhow::Result<usize> {
        let keys = parse(&self.fetch().await?)?;
        let count = keys.len();
        *self.keys.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        Ok(count)
    }

    async fn fetch(&self) -> anyhow::Result<Vec<u8>> {
        let url = &self.settings.url;
        let mut response = self.client.get(url).send().await.with_context(|| format!("GET {url}"))?;
        anyhow::ensure!(response.status().is_success(), "GET {url} answered {}", response.status());
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.with_context(|| format!("reading {url}"))? {
            body.extend_from_slice(&chunk);
            anyhow::ensure!(body.len() <= MAX_JWKS_BYTES, "{url} is larger than {MAX_JWKS_BYTES} bytes");
        }
        Ok(body)
    }

    fn current(&self) -> Arc<Vec<SigningKey>> {
        self.keys.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn knows(&self, kid: Option<&str>) -> bool {
        self.current().iter().any(|key| key.kid.as_deref() == kid)
    }
}

/// The certificates of the PEM file `gateway.auth.jwks_ca_file`.
fn ca_certificates(path: &std::path::Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem =
        std::fs::read(path).with_context(|| format!("gateway.auth.jwks_ca_file: cannot read {}", path.display()))?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("gateway.auth.jwks_ca_file: {} is not PEM", path.display()))?;
    anyhow::ensure!(!certificates.is_empty(), "gateway.auth.jwks_ca_file: {} holds no certificate", path.display());
    Ok(certificates)
}

/// The keys of `current` for `kid` (any key when `None`) that verify `alg`.
fn matching(current: &[SigningKey], kid: Option<&str>, alg: Algorithm) -> Vec<SigningKey> {
    current
        .iter()
        .filter(|key| kid.is_none() || key.kid.as_deref() == kid)
        .filter(|key| key.algorithms.contains(&alg))
        .cloned()
        .collect()
}

/// The usable keys of a JWKS document (`{"keys": [...]}`). A key that does not parse or
/// is not a signature key is skipped with a log line; a document that is not a JWKS is an
/// error.
pub fn parse(document: &[u8]) -> anyhow::Result<Vec<SigningKey>> {
    let document: Value = serde_json::from_slice(document).context("the JWKS is not JSON")?;
    let entries = document.get("keys").and_then(Value::as_array).context("the JWKS has no \"keys\" list")?;
    Ok(entries.iter().filter_map(|entry| signing_key(entry).map_err(|error| skipped(entry, &error)).ok()).collect())
}

fn skipped(entry: &Value, error: &anyhow::Error) {
    let kid = entry.get("kid").and_then(Value::as_str).unwrap_or("");
    tracing::info!(kid, error = format!("{error:#}"), "JWKS key skipped");
}

fn signing_key(entry: &Value) -> anyhow::Result<SigningKey> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).context("not a supported JWK")?;
    if let Some(usage) = &jwk.common.public_key_use {
        anyhow::ensure!(*usage == PublicKeyUse::Signature, "not a signature key");
    }
    let family_algorithms: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            jsonwebtoken::jwk::EllipticCurve::P256 => &[Algorithm::ES256],
            jsonwebtoken::jwk::EllipticCurve::P384 => &[Algorithm::ES384],
            _ => anyhow::bail!("unsupported curve"),
        },
        AlgorithmParameters::OctetKeyPair(_) => &[Algorithm::EdDSA],
        AlgorithmParameters::OctetKey(_) => anyhow::bail!("a symmetric key is never accepted from a JWKS"),
    };
    let algorithms = match jwk.common.key_algorithm {
        Some(named) => {
            let named: Algorithm = named.to_string().parse().context("unsupported alg")?;
            anyhow::ensure!(family_algorithms.contains(&named), "alg {named:?} does not fit the key type");
            vec![named]
        }
        None => family_algorithms.to_vec(),
    };
    let key = DecodingKey::from_jwk(&jwk).context("the key's parameters do not parse")?;
    Ok(SigningKey { kid: jwk.common.key_id.clone(), algorithms, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn symmetric_encryption_and_malformed_keys_are_skipped() {
        let document = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "use": "sig", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rs256-only", "alg": "RS256", "n": RSA_N, "e": "AQAB"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": RSA_N, "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"},
            {"kty": "RSA", "kid": "mismatch", "alg": "ES256", "n": RSA_N, "e": "AQAB"},
            {"kty": "XYZ", "kid": "alien"}
        ]});
        let keys = parse(document.to_string().as_bytes()).expect("a JWKS");
        let kids: Vec<_> = keys.iter().map(|key| key.kid.as_deref().unwrap_or("")).collect();
        assert_eq!(kids, ["rsa", "rs256-only"]);
        assert!(keys[0].algorithms.contains(&Algorithm::PS256));
        assert_eq!(keys[1].algorithms, [Algorithm::RS256]);
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
    }
}
