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
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// `economy health`.
#[derive(Debug, Args)]
pub struct Health {
    /// The server to ask: `HOST:PORT` (plaintext HTTP/2) or a URL such as `http://HOST:PORT`.
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
pub async fn check(args: &Health) -> anyhow::Result<String> {
    let url = endpoint_url(&args.addr);
    let endpoint = Endpoint::from_shared(url.clone())
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
pub async fn run(args: Health) -> anyhow::Result<ExitCode> {
    let status = check(&args).await?;
    println!("{status}");
    Ok(if status == ServingStatus::Serving.as_str_name() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[cfg(test)]
mod tests {
    use economy_kit::server::{ServerLimits, spawn};
    use tokio_util::sync::CancellationToken;
    use tonic::service::Routes;

    use super::*;

    const NAME: &str = "economy.test.v1.Probe";

    fn args(addr: String, service: &str) -> Health {
        Health { addr, service: service.to_owned(), timeout: Duration::from_secs(3) }
    }

    #[tokio::test]
    async fn reports_serving_then_not_serving_and_refuses_unknown_names() -> anyhow::Result<()> {
        let server =
            spawn("127.0.0.1:0", NAME, Routes::default(), &ServerLimits::default(), CancellationToken::new()).await?;
        let addr = server.addr.to_string();
        assert_eq!(check(&args(addr.clone(), NAME)).await?, "SERVING");
        assert_eq!(check(&args(format!("http://{addr}"), "")).await?, "SERVING", "the server as a whole");

        server.health.set_service_status(NAME, tonic_health::ServingStatus::NotServing).await;
        assert_eq!(check(&args(addr.clone(), NAME)).await?, "NOT_SERVING");
        assert_eq!(run(args(addr.clone(), NAME)).await?, ExitCode::FAILURE);

        let unknown = check(&args(addr, "no.such.Service")).await.expect_err("unknown name");
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
        assert!(check(&closed).await.is_err());
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
