//! `economy health ADDR [--service NAME]`: one `grpc.health.v1.Health/Check` call to any
//! Economy server (gateway or service), for container health checks and scripts that must
//! not download a separate probe (docs/operations.md, "Deployment").
//!
//! It needs no token and no data directory: every server answers the health protocol
//! without authentication, under its own health name (e.g. `economy.ledger.v1.LedgerService`)
//! and under the empty name for the server as a whole.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::client::{self, GlobalArgs};

/// `economy health` (an `https://` address is verified as the global `--ca-file` says:
/// that CA, else `<data-dir>/tls/ca.pem` when present, else the system's roots).
#[derive(Debug, Args)]
pub struct Health {
    /// The server to ask: `HOST:PORT` (plaintext HTTP/2) or a URL such as `http://HOST:PORT`
    /// or `https://HOST:PORT` (TLS).
    #[arg(value_name = "ADDR")]
    pub addr: String,
    /// The health name to ask about, e.g. `economy.ledger.v1.LedgerService`; empty (the
    /// default) asks about the server as a whole.
    #[arg(long, value_name = "NAME", default_value = "")]
    pub service: String,
    /// Deadline of the whole check, connecting included (e.g. `1s`, `500ms`).
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// `addr` as an endpoint URL: `HOST:PORT` gets `http://`, a URL is kept.
fn endpoint_url(addr: &str) -> String {
    if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") }
}

/// The answer's name as the protocol spells it (`SERVING`, `NOT_SERVING`, `UNKNOWN`,
/// `SERVICE_UNKNOWN`), or the raw number for a value this client does not know.
fn status_name(status: i32) -> String {
    ServingStatus::try_from(status)
        .map_or_else(|_| format!("UNKNOWN_STATUS_{status}"), |known| known.as_str_name().to_owned())
}

/// Asks `args.addr` for the status of `args.service`. Returns the status name.
///
/// Errors: an invalid address, a connection failure or an elapsed `--timeout` (as
/// `anyhow` errors), and a gRPC failure of the call (as a `tonic::Status`; a server that
/// does not know the name answers `NOT_FOUND`).
pub async fn check(args: &Health, global: &GlobalArgs) -> anyhow::Result<String> {
    let url = endpoint_url(&args.addr);
    let endpoint = client::endpoint(&url, global)
        .with_context(|| format!("invalid address `{}`", args.addr))?
        .connect_timeout(args.timeout)
        .timeout(args.timeout);
    let call = async {
        let channel = endpoint.connect().await.map_err(|error| anyhow::anyhow!("cannot connect to {url}: {error}"))?;
        let request = HealthCheckRequest { service: args.service.clone() };
        let response = HealthClient::new(channel).check(request).await?;
        anyhow::Ok(status_name(response.into_inner().status))
    };
    tokio::time::timeout(args.timeout, call)
        .await
        .map_err(|_| anyhow::anyhow!("no answer from {url} within {}", humantime::format_duration(args.timeout)))?
}

/// Runs `economy health`: prints the status (`SERVING`, `NOT_SERVING`, …) and exits 0
/// only for `SERVING`, 1 otherwise (failures print `error: …` through `client::report`).
pub async fn run(args: Health, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let status = check(&args, global).await?;
    println!("{status}");
    Ok(if status == ServingStatus::Serving.as_str_name() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use economy_kit::server::{ServeOptions, ServerLimits, spawn, spawn_with};
    use tokio_util::sync::CancellationToken;
    use tonic::service::Routes;

    use super::*;

    const NAME: &str = "economy.test.v1.Probe";

    fn args(addr: String, service: &str) -> Health {
        Health { addr, service: service.to_owned(), timeout: Duration::from_secs(3) }
    }

    /// The global options of `economy <extra…> health`.
    fn global(extra: &[&str]) -> GlobalArgs {
        #[derive(clap::Parser)]
        struct Global {
            #[command(flatten)]
            global: GlobalArgs,
        }
        let argv = std::iter::once("economy").chain(extra.iter().copied());
        <Global as clap::Parser>::try_parse_from(argv).expect("global options").global
    }

    #[tokio::test]
    async fn checks_a_tls_server_against_the_given_ca() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("economy-health-tls-{}", uuid::Uuid::now_v7()));
        let pki = economy_stack::tls::DevPki::generate(&dir)?;
        let options = ServeOptions::tls(&pki.server_tls(false), "test.tls")?;
        let limits = ServerLimits::default();
        let server =
            spawn_with("127.0.0.1:0", NAME, Routes::default(), &limits, options, CancellationToken::new()).await?;
        let ca = pki.ca_file.display().to_string();
        let url = server.url();
        assert!(url.starts_with("https://"), "{url}");
        assert_eq!(check(&args(url.clone(), NAME), &global(&["--ca-file", &ca])).await?, "SERVING");
        let no_dev_ca = dir.join("no-such-data-dir").display().to_string();
        let untrusted = check(&args(url, NAME), &global(&["--data-dir", &no_dev_ca])).await;
        assert!(untrusted.is_err(), "a server outside the system's roots is refused");
        server.stop().await?;
        Ok(std::fs::remove_dir_all(dir)?)
    }

    #[tokio::test]
    async fn a_server_requiring_mtls_is_checked_with_the_development_client_certificate() -> anyhow::Result<()> {
        let data_dir = std::env::temp_dir().join(format!("economy-health-mtls-{}", uuid::Uuid::now_v7()));
        let pki = economy_stack::tls::DevPki::generate(&data_dir.join(client::DEV_TLS_DIR))?;
        let options = ServeOptions::tls(&pki.server_tls(true), "test.tls")?;
        let limits = ServerLimits::default();
        let server =
            spawn_with("127.0.0.1:0", NAME, Routes::default(), &limits, options, CancellationToken::new()).await?;
        let data = data_dir.display().to_string();
        assert_eq!(check(&args(server.url(), NAME), &global(&["--data-dir", &data])).await?, "SERVING");
        let ca = pki.ca_file.display().to_string();
        let anonymous = check(&args(server.url(), NAME), &global(&["--ca-file", &ca])).await;
        assert!(anonymous.is_err(), "no client certificate: refused");
        let (cert, key) = (pki.client_cert_file.display().to_string(), pki.client_key_file.display().to_string());
        let explicit = global(&["--ca-file", &ca, "--client-cert", &cert, "--client-key", &key]);
        assert_eq!(check(&args(server.url(), NAME), &explicit).await?, "SERVING");
        server.stop().await?;
        Ok(std::fs::remove_dir_all(data_dir)?)
    }

    #[tokio::test]
    async fn reports_serving_then_not_serving_and_refuses_unknown_names() -> anyhow::Result<()> {
        let server =
            spawn("127.0.0.1:0", NAME, Routes::default(), &ServerLimits::default(), CancellationToken::new()).await?;
        let addr = server.addr.to_string();
        assert_eq!(check(&args(addr.clone(), NAME), &global(&[])).await?, "SERVING");
        assert_eq!(check(&args(format!("http://{addr}"), ""), &global(&[])).await?, "SERVING", "the server as a whole");

        server.health.set_service_status(NAME, tonic_health::ServingStatus::NotServing).await;
        assert_eq!(check(&args(addr.clone(), NAME), &global(&[])).await?, "NOT_SERVING");
        assert_eq!(run(args(addr.clone(), NAME), &global(&[])).await?, ExitCode::FAILURE);

        let unknown = check(&args(addr, "no.such.Service"), &global(&[])).await.expect_err("unknown name");
        let status = unknown.downcast_ref::<tonic::Status>().expect("a gRPC status");
        assert_eq!(status.code(), tonic::Code::NotFound);
        server.stop().await
    }

    #[tokio::test]
    async fn a_closed_port_is_an_error_not_a_hang() -> anyhow::Result<()> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        drop(listener);
        let mut closed = args(addr, "");
        closed.timeout = Duration::from_millis(500);
        let started = std::time::Instant::now();
        assert!(check(&closed, &global(&[])).await.is_err());
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        Ok(())
    }

    #[test]
    fn addresses_and_names() {
        assert_eq!(endpoint_url("127.0.0.1:50061"), "http://127.0.0.1:50061");
        assert_eq!(endpoint_url("https://ledger:50061"), "https://ledger:50061");
        assert_eq!(status_name(1), "SERVING");
        assert_eq!(status_name(2), "NOT_SERVING");
        assert_eq!(status_name(9), "UNKNOWN_STATUS_9");
    }
}
