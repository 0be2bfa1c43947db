//! TLS settings of servers and internal clients (docs/operations.md, "TLS"). rustls only:
//! no OpenSSL anywhere.
//!
//! Every server section (`[gateway]`, `[ledger]`, `[items]`, `[redemption]`, `[market]`)
//! has a `tls` table ([`ServerTls`]); every section whose service calls others
//! (`[gateway]`, `[redemption]`, `[market]`) has an `internal_tls` table ([`ClientTls`]).
//! Every path is a PEM file; an empty path means "not set". Both default to empty:
//! plaintext, for development.

use serde::{Deserialize, Serialize};

/// `<section>.tls`: the server's certificate. Empty `cert_file` and `key_file`: plaintext.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerTls {
    /// PEM certificate chain, leaf first. Re-read when it changes (rotation without a
    /// restart).
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf; re-read with `cert_file`.
    pub key_file: String,
    /// PEM CA certificates: when set, every client must present a certificate they sign
    /// (mTLS).
    pub client_ca_file: String,
}

impl ServerTls {
    /// True when the server serves TLS (`cert_file` or `key_file` set; both are required).
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() || !self.key_file.is_empty()
    }
}

/// `<section>.internal_tls`: how the service's clients of other services verify them (and
/// prove themselves, for mTLS). Empty `ca_file`: plaintext `http://` upstreams.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientTls {
    /// PEM CA certificates the upstream servers' certificates must chain to; the server
    /// name is the upstream URL's host.
    pub ca_file: String,
    /// PEM client certificate chain, for upstreams requiring mTLS (with `key_file`).
    pub cert_file: String,
    /// PEM private key of `cert_file`.
    pub key_file: String,
}

impl ClientTls {
    /// True when internal calls use TLS (`ca_file` set).
    pub fn enabled(&self) -> bool {
        !self.ca_file.is_empty()
    }
}

mod client;
mod pem;
mod server;

pub use client::endpoint;
pub use server::{Acceptor, incoming};
#[cfg(test)]
mod tests;
