//! What the `economy-gateway` binary refuses to start with outside development
//! (docs/gateway.md, "Start-up refusals"): HS256 development tokens, credentials with
//! every origin allowed, and reflection on a TLS listener that was not explicitly allowed.
//! `gateway.development = true` (set by `economy up`) accepts the first and the last.

use serde::{Deserialize, Serialize};

use crate::config::GatewayConfig;

/// `gateway.reflection`: whether the public listener serves gRPC server reflection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reflection {
    /// Served on a plaintext listener, and over TLS in a development gateway. A TLS
    /// listener outside development refuses to start until `on` or `off` is chosen.
    #[default]
    Plaintext,
    /// Served, TLS or not (explicitly allowed).
    On,
    /// Not served.
    Off,
}

impl Reflection {
    /// Whether reflection is served on a listener that is `tls` (or not) of a gateway that
    /// is `development` (or not).
    pub fn served(self, tls: bool, development: bool) -> bool {
        match self {
            Self::On => true,
            Self::Off => false,
            Self::Plaintext => !tls || development,
        }
    }
}

/// Refuses `config` when it is unsafe for a non-development gateway; the error lists every
/// refusal, each naming its setting and the way out.
pub fn refuse_unsafe(config: &GatewayConfig) -> anyhow::Result<()> {
    let refusals = refusals(config);
    anyhow::ensure!(refusals.is_empty(), "unsafe gateway configuration: {}", refusals.join("; "));
    Ok(())
}

fn refusals(config: &GatewayConfig) -> Vec<String> {
    let mut refusals = Vec::new();
    if config.cors.allows_any_origin() && config.cors.allow_credentials {
        refusals.push(
            "gateway.cors.allow_credentials = true with gateway.cors.allowed_origins = [\"*\"]: list the origins \
             that may send credentials"
                .to_owned(),
        );
    }
    if config.development {
        return refusals;
    }
    if !config.auth.hs256_secret.is_empty() {
        refusals.push(
            "gateway.auth.hs256_secret: HS256 development tokens are refused outside development; verify the \
             identity provider's tokens (gateway.auth.jwks_url or a public key), or set gateway.development = true \
             on a development deployment"
                .to_owned(),
        );
    }
    let auth = &config.auth;
    if !auth.jwks_url.is_empty() && !auth.jwks_url.starts_with("https://") {
        refusals.push(
            "gateway.auth.jwks_url: keys fetched over plaintext can be replaced on the way; use https://".to_owned(),
        );
    }
    let verifies_provider_tokens = !auth.jwks_url.is_empty()
        || !auth.rs256_public_key_pem.is_empty()
        || !auth.es256_public_key_pem.is_empty()
        || !auth.eddsa_public_key_pem.is_empty();
    if verifies_provider_tokens && (auth.issuer.is_empty() || auth.audience.is_empty()) {
        refusals.push(
            "gateway.auth.issuer and gateway.auth.audience: without both, any token the provider's keys signed \
             (another client's, another tenant's) would be accepted; set them"
                .to_owned(),
        );
    }
    if config.tls.enabled() && config.reflection == Reflection::Plaintext {
        refusals.push(
            "gateway.reflection: reflection would be open on the TLS listener (gateway.tls); set \
             gateway.reflection = \"off\", or \"on\" to allow it explicitly"
                .to_owned(),
        );
    }
    refusals
}

#[cfg(test)]
mod tests {
    use economy_kit::tls::ServerTls;

    use super::*;

    fn production() -> GatewayConfig {
        let mut config = GatewayConfig::default();
        config.auth.jwks_url = "https://idp.example.com/certs".into();
        config.auth.issuer = "https://idp.example.com".into();
        config.auth.audience = "economy".into();
        config
    }

    fn with_tls(mut config: GatewayConfig) -> GatewayConfig {
        config.tls = ServerTls { cert_file: "cert.pem".into(), key_file: "key.pem".into(), ..ServerTls::default() };
        config
    }

    fn refusal(config: &GatewayConfig) -> String {
        refuse_unsafe(config).expect_err("refused").to_string()
    }

    #[test]
    fn a_production_configuration_starts() {
        assert!(refuse_unsafe(&production()).is_ok());
        let mut explicit = with_tls(production());
        for reflection in [Reflection::On, Reflection::Off] {
            explicit.reflection = reflection;
            assert!(refuse_unsafe(&explicit).is_ok(), "{reflection:?}");
        }
    }

    #[test]
    fn each_unsafe_setting_is_named() {
        let mut hs256 = production();
        hs256.auth.hs256_secret = "a-development-secret".into();
        assert!(refusal(&hs256).contains("gateway.auth.hs256_secret"));
        assert!(refusal(&with_tls(production())).contains("gateway.reflection"));
        let mut any_origin = production();
        any_origin.cors.allowed_origins = vec!["*".into()];
        assert!(refuse_unsafe(&any_origin).is_ok());
        any_origin.cors.allow_credentials = true;
        assert!(refusal(&any_origin).contains("gateway.cors.allow_credentials"));
        let mut plaintext_keys = production();
        plaintext_keys.auth.jwks_url = "http://idp.example.com/certs".into();
        assert!(refusal(&plaintext_keys).contains("gateway.auth.jwks_url"));
        let mut no_issuer = production();
        no_issuer.auth.issuer.clear();
        let mut no_audience = production();
        no_audience.auth.audience.clear();
        for unbound in [no_issuer, no_audience] {
            assert!(refusal(&unbound).contains("gateway.auth.issuer and gateway.auth.audience"));
        }
    }

    #[test]
    fn development_accepts_hs256_and_reflection_over_tls_but_not_credentials_with_any_origin() {
        let mut development = with_tls(production());
        development.development = true;
        development.auth.hs256_secret = "a-development-secret".into();
        assert!(refuse_unsafe(&development).is_ok());
        assert!(Reflection::Plaintext.served(true, true));
        assert!(!Reflection::Plaintext.served(true, false));
        development.cors.allowed_origins = vec!["*".into()];
        development.cors.allow_credentials = true;
        assert!(refusal(&development).contains("gateway.cors.allow_credentials"));
    }
}
