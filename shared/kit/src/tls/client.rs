//! Internal clients over TLS: tonic's rustls client, verifying the server's certificate
//! against `internal_tls.ca_file` and the name in the upstream URL.

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::ClientTls;
use super::pem::read;

/// An endpoint for `url` as `section`'s internal client (`section` names the settings in
/// errors, e.g. `market.internal_tls`): with TLS enabled, `url` must be `https://` and
/// the server must present a certificate signed by `ca_file` for the URL's host (a DNS
/// name or an IP address); with `cert_file`/`key_file` it presents that client
/// certificate. Without `ca_file`, an `https://` URL is verified against the system's
/// roots and an `http://` one is plaintext.
///
/// Errors: an invalid URL, a scheme that does not match the setting, unreadable files.
pub fn endpoint(url: &str, tls: &ClientTls, section: &str) -> anyhow::Result<Endpoint> {
    let endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|error| anyhow::anyhow!("invalid URL {url}: {error}"))?;
    let https = endpoint.uri().scheme_str() == Some("https");
    if !tls.enabled() {
        anyhow::ensure!(
            tls.cert_file.is_empty() && tls.key_file.is_empty(),
            "{section}.cert_file / key_file need {section}.ca_file: a client certificate is only sent over TLS"
        );
        return Ok(if https { endpoint.tls_config(ClientTlsConfig::new().with_native_roots())? } else { endpoint });
    }
    anyhow::ensure!(https, "{section}.ca_file is set, so {url} must be https://");
    Ok(endpoint.tls_config(config(tls, section)?)?)
}

fn config(tls: &ClientTls, section: &str) -> anyhow::Result<ClientTlsConfig> {
    let ca = read(&tls.ca_file, &format!("{section}.ca_file"))?;
    let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    match (tls.cert_file.is_empty(), tls.key_file.is_empty()) {
        (true, true) => Ok(config),
        (false, false) => {
            let cert = read(&tls.cert_file, &format!("{section}.cert_file"))?;
            let key = read(&tls.key_file, &format!("{section}.key_file"))?;
            Ok(config.identity(Identity::from_pem(cert, key)))
        }
        _ => anyhow::bail!("{section}.cert_file and {section}.key_file go together: set both or neither"),
    }
}
