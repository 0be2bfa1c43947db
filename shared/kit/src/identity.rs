//! The internal identity (docs/gateway.md, "The internal identity": the gateway forwards
//! the caller to services as metadata with an HMAC signature): who is calling, signed
//! with a secret shared by the gateway and the services. A service rejects a missing,
//! unsigned, forged or stale identity with `UNAUTHENTICATED`.
//!
//! Wire form: metadata `x-economy-identity` = `v1;user=<id>;role=<level>;ts=<unix secs>`
//! (or `v1;service=<name>;ts=<unix secs>`) and `x-economy-identity-sig` = lowercase hex
//! HMAC-SHA256 of that value.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Status};

use crate::{error, reasons};

/// Metadata key of the identity payload.
pub const IDENTITY_HEADER: &str = "x-economy-identity";
/// Metadata key of the payload's signature.
pub const SIGNATURE_HEADER: &str = "x-economy-identity-sig";
/// `ErrorInfo.domain` of identity failures.
pub const DOMAIN: &str = "economy.identity";

/// Role levels (docs/gateway.md, "Authentication").
pub mod roles {
    /// A player.
    pub const USER: i32 = 0;
    /// Merchant staff (redeems codes).
    pub const MERCHANT_STAFF: i32 = 50;
    /// Operator with every right.
    pub const ADMIN: i32 = 100;
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person: a positive user id and a role level (`roles`).
    User {
        /// Positive user id.
        user_id: i64,
        /// Role level, 0..=100.
        role_level: i32,
    },
    /// Another Economy service acting on its own authority (market, redemption, …).
    Service {
        /// Service name: 1-64 of `[a-z0-9_-]`.
        name: String,
    },
}

impl Caller {
    /// A user caller.
    pub fn user(user_id: i64, role_level: i32) -> Self {
        Self::User { user_id, role_level }
    }

    /// A service caller.
    pub fn service(name: impl Into<String>) -> Self {
        Self::Service { name: name.into() }
    }

    /// True for a user with role >= `roles::ADMIN`.
    pub fn is_admin(&self) -> bool {
        matches!(self, Self::User { role_level, .. } if *role_level >= roles::ADMIN)
    }

    /// True for merchant staff (role >= `roles::MERCHANT_STAFF`), an admin or a service.
    pub fn is_staff(&self) -> bool {
        self.is_service() || matches!(self, Self::User { role_level, .. } if *role_level >= roles::MERCHANT_STAFF)
    }

    /// True for an internal service identity.
    pub fn is_service(&self) -> bool {
        matches!(self, Self::Service { .. })
    }

    /// True for an admin or a service.
    pub fn is_privileged(&self) -> bool {
        self.is_admin() || self.is_service()
    }

    /// The user id of a user caller.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Self::User { user_id, .. } => Some(*user_id),
            Self::Service { .. } => None,
        }
    }

    /// True when the caller may act on `user_id`'s own resources: that user, an admin or
    /// a service.
    pub fn may_act_for(&self, user_id: i64) -> bool {
        self.is_privileged() || self.user_id() == Some(user_id)
    }

    /// Audit form: `user:<id>` or `service:<name>`.
    pub fn actor(&self) -> String {
        match self {
            Self::User { user_id, .. } => format!("user:{user_id}"),
            Self::Service { name } => format!("service:{name}"),
        }
    }

    fn payload(&self, issued_at: i64) -> String {
        match self {
            Self::User { user_id, role_level } => format!("v1;user={user_id};role={role_level};ts={issued_at}"),
            Self::Service { name } => format!("v1;service={name};ts={issued_at}"),
        }
    }

    fn parse_payload(payload: &str) -> Option<(Self, i64)> {
        let mut parts = payload.split(';');
        if parts.next()? != "v1" {
            return None;
        }
        let fields: Vec<(&str, &str)> = parts.map(|part| part.split_once('=')).collect::<Option<_>>()?;
        let caller = match fields.as_slice() {
            [("user", id), ("role", role), ("ts", _)] => {
                let (user_id, role_level) = (id.parse().ok()?, role.parse().ok()?);
                (user_id > 0 && (0..=roles::ADMIN).contains(&role_level))
                    .then_some(Self::User { user_id, role_level })?
            }
            [("service", name), ("ts", _)] if valid_service_name(name) => Self::service(*name),
            _ => return None,
        };
        let issued_at = fields.last()?.1.parse().ok()?;
        Some((caller, issued_at))
    }
}

fn valid_service_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-')
}

/// `[identity]` section of the configuration.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct IdentityConfig {
    /// Shared HMAC secret (at least 16 bytes). Never logged.
    pub secret: String,
    /// How old (or how far in the future) a signed identity may be, in seconds.
    pub max_clock_skew_secs: u64,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { secret: String::new(), max_clock_skew_secs: 300 }
    }
}

impl std::fmt::Debug for IdentityConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("IdentityConfig")
            .field("secret", &"<redacted>")
            .field("max_clock_skew_secs", &self.max_clock_skew_secs)
            .finish()
    }
}

/// Signs and verifies internal identities with the shared secret.
#[derive(Clone)]
pub struct IdentityKey {
    key: Arc<[u8]>,
    max_skew_secs: i64,
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("IdentityKey(<redacted>)")
    }
}

impl IdentityKey {
    /// Builds the key; fails when the secret is shorter than 16 bytes.
    pub fn new(config: &IdentityConfig) -> anyhow::Result<Self> {
        anyhow::ensure!(
            config.secret.len() >= 16,
            "identity.secret must be set to at least 16 bytes (ECONOMY_IDENTITY__SECRET)"
        );
        Ok(Self {
            key: config.secret.as_bytes().into(),
            max_skew_secs: i64::try_from(config.max_clock_skew_secs).unwrap_or(i64::MAX),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).expect("HMAC accepts keys of any length")
    }

    /// Writes `caller`, signed now, into `metadata`, replacing any identity already there.
    pub fn attach(&self, caller: &Caller, metadata: &mut MetadataMap) {
        let payload = caller.payload(crate::time::now_millis() / 1000);
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = hex::encode(mac.finalize().into_bytes());
        // Both values are ASCII by construction (validated names and numbers).
        if let (Ok(payload), Ok(signature)) = (MetadataValue::try_from(payload), MetadataValue::try_from(signature)) {
            metadata.insert(IDENTITY_HEADER, payload);
            metadata.insert(SIGNATURE_HEADER, signature);
        }
    }

    /// Reads and checks the identity in `metadata`.
    ///
    /// Errors (`UNAUTHENTICATED`): `IDENTITY_MISSING`, `IDENTITY_INVALID` (malformed or
    /// bad signature), `IDENTITY_STALE` (issued outside the allowed clock skew).
    pub fn verify(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let (Some(payload), Some(signature)) = (metadata.get(IDENTITY_HEADER), metadata.get(SIGNATURE_HEADER)) else {
            return Err(unauthenticated(reasons::IDENTITY_MISSING, "no signed caller identity"));
        };
        let invalid = || unauthenticated(reasons::IDENTITY_INVALID, "caller identity is malformed or forged");
        let payload = payload.to_str().map_err(|_| invalid())?;
        let signature = signature.to_str().ok().and_then(|sig| hex::decode(sig).ok()).ok_or_else(invalid)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&signature).map_err(|_| invalid())?;
        let (caller, issued_at) = Caller::parse_payload(payload).ok_or_else(invalid)?;
        let now = crate::time::now_millis() / 1000;
        if now.abs_diff(issued_at) > self.max_skew_secs.unsigned_abs() {
            return Err(unauthenticated(reasons::IDENTITY_STALE, "caller identity is outside the allowed clock skew"));
        }
        Ok(caller)
    }

    /// A client interceptor that signs every request as `caller`.
    pub fn signer(&self, caller: Caller) -> Signer {
        Signer { key: self.clone(), caller }
    }
}

fn unauthenticated(reason: &str, message: &str) -> Status {
    error::status(Code::Unauthenticated, DOMAIN, reason, message, Vec::<(String, String)>::new())
}

/// Server side: verifies the identity and stores the `Caller` in the request extensions
/// (and a user's id for the access line, `crate::observe::record_user`).
impl tonic::service::Interceptor for IdentityKey {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let caller = self.verify(request.metadata())?;
        if let Some(user_id) = caller.user_id() {
            crate::observe::record_user(user_id);
        }
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

/// The verified caller of a request that went through the `IdentityKey` interceptor.
pub fn caller<T>(request: &Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| unauthenticated(reasons::IDENTITY_MISSING, "no signed caller identity"))
}

/// Client side: signs every outgoing request as one caller.
#[derive(Debug, Clone)]
pub struct Signer {
    key: IdentityKey,
    caller: Caller,
}

/// Also injects the current trace context (`crate::telemetry::inject`), so every
/// service-to-service call joins the trace of the work that made it.
impl tonic::service::Interceptor for Signer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        self.key.attach(&self.caller, request.metadata_mut());
        crate::telemetry::inject(request.metadata_mut());
        Ok(request)
    }
}

/// `idempotency_key`, validated as 1-128 printable ASCII characters; a violation of
/// `idempotency_key` is recorded otherwise (the caller neither sent one nor came through
/// the gateway).
pub fn checked_idempotency_key<T>(
    request: &Request<T>,
    own: &str,
    violations: &mut crate::error::Violations,
) -> String {
    let key = idempotency_key(request, own);
    let valid = (1..=128).contains(&key.len()) && key.bytes().all(|byte| byte.is_ascii_graphic());
    violations.check(valid, "idempotency_key", "1-128 printable ASCII characters (or call through the gateway)");
    key
}

/// Metadata the gateway forwards with every write: the business event id.
pub const BUSINESS_EVENT_HEADER: &str = "x-business-event-id";

/// The idempotency key of a write: the request's own `idempotency_key`, or, when empty,
/// the business event id the gateway forwards (`x-business-event-id`), so a retry that
/// slips past the gateway still applies once (docs/idempotency.md, "Derived keys in the services").
/// Empty when neither is present.
pub fn idempotency_key<T>(request: &Request<T>, own: &str) -> String {
    if !own.is_empty() {
        return own.to_owned();
    }
    request.metadata().get(BUSINESS_EVENT_HEADER).and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> IdentityKey {
        IdentityKey::new(&IdentityConfig { secret: secret.into(), max_clock_skew_secs: 300 }).expect("key")
    }

    fn reason_of(result: Result<Caller, Status>) -> String {
        error::reason(&result.expect_err("rejected")).unwrap_or_default()
    }

    #[test]
    fn signed_identity_round_trips() {
        let key = key("0123456789abcdef0123");
        for caller in [Caller::user(42, roles::ADMIN), Caller::service("market")] {
            let mut metadata = MetadataMap::new();
            key.attach(&caller, &mut metadata);
            assert_eq!(key.verify(&metadata).expect("verified"), caller);
        }
    }

    #[test]
    fn missing_forged_and_foreign_identities_are_rejected() {
        let key = key("0123456789abcdef0123");
        assert_eq!(reason_of(key.verify(&MetadataMap::new())), "IDENTITY_MISSING");

        let mut metadata = MetadataMap::new();
        key.attach(&Caller::user(7, roles::USER), &mut metadata);
        let forged =
            metadata.get(IDENTITY_HEADER).expect("payload").to_str().expect("ascii").replace("role=0", "role=100");
        metadata.insert(IDENTITY_HEADER, forged.parse().expect("ascii"));
        assert_eq!(reason_of(key.verify(&metadata)), "IDENTITY_INVALID");

        let mut foreign = MetadataMap::new();
        self::key("another-secret-of-16+").attach(&Caller::user(7, roles::ADMIN), &mut foreign);
        assert_eq!(reason_of(key.verify(&foreign)), "IDENTITY_INVALID");
    }

    #[test]
    fn stale_identity_is_rejected() {
        let key = key("0123456789abcdef0123");
        let payload = "v1;user=7;role=0;ts=1000";
        let mut mac = key.mac();
        mac.update(payload.as_bytes());
        let mut metadata = MetadataMap::new();
        metadata.insert(IDENTITY_HEADER, payload.parse().expect("ascii"));
        metadata.insert(SIGNATURE_HEADER, hex::encode(mac.finalize().into_bytes()).parse().expect("ascii"));
        assert_eq!(reason_of(key.verify(&metadata)), "IDENTITY_STALE");
    }

    #[test]
    fn payload_parsing_rejects_bad_shapes() {
        for payload in [
            "",
            "v2;user=1;role=0;ts=1",
            "v1;user=0;role=0;ts=1",
            "v1;user=1;role=101;ts=1",
            "v1;service=Bad;ts=1",
            "v1;user=1;ts=1",
        ] {
            assert!(Caller::parse_payload(payload).is_none(), "{payload}");
        }
    }

    #[test]
    fn short_secret_is_refused() {
        assert!(IdentityKey::new(&IdentityConfig { secret: "short".into(), max_clock_skew_secs: 1 }).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let config = IdentityConfig { secret: "super-secret-value-123".into(), max_clock_skew_secs: 1 };
        assert!(!format!("{config:?}").contains("super-secret"));
        assert!(!format!("{:?}", key("super-secret-value-123")).contains("super-secret"));
    }
}
