//! The gateway (docs/gateway.md): the only public endpoint. A generic proxy driven by
//! the descriptor set routes every public RPC of the services; it authenticates callers,
//! enforces each method's policy and makes every write safe to retry.

pub mod auth;
pub mod backpack;
pub mod canonical;
pub mod codec;
pub mod config;
pub mod consistency;
pub mod cors;
pub mod error;
pub mod jobs;
pub mod metrics;
pub mod operations;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod safety;
pub mod store;
pub mod streams;
pub mod upstream;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use economy_kit::connect::ConnectLayer;
use economy_kit::identity::IdentityKey;
use economy_kit::jobs::Scheduler;
use economy_kit::server::{RunningServer, ServeOptions, ServerLimits, spawn_with};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Channel;

use economy_proto::gateway::v1::backpack_service_server::BackpackServiceServer;
use economy_proto::gateway::v1::operations_service_server::OperationsServiceServer;

use crate::config::GatewayConfig;
use crate::proxy::{Gateway, Proxy};
use crate::registry::Registry;

/// `ErrorInfo.domain` of the gateway's own errors.
pub const DOMAIN: &str = "economy.gateway";
/// Name under which the gateway reports its own health.
pub const SERVICE_NAME: &str = "economy.gateway.v1.Gateway";

/// Checks the real API (refusing to start on any write without a canonical operation),
/// then serves it. See `start_with_registry`.
pub async fn start(
    config: &GatewayConfig,
    identity: &IdentityKey,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    let registry = Registry::load(economy_proto::FILE_DESCRIPTOR_SET)?;
    start_with_registry(registry, config, identity, limits, shutdown).await
}

/// Refuses `registry` if any write lacks a valid, unique canonical operation (the error
/// lists every offending method); otherwise opens the idempotency database, starts the
/// jobs and the upstream health probe, and serves the proxy (gRPC and gRPC-web) until
/// `shutdown`.
pub async fn start_with_registry(
    registry: Registry,
    config: &GatewayConfig,
    identity: &IdentityKey,
    limits: &ServerLimits,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningServer> {
    registry.check()?;
    let schedules = config.schedules()?;
    metrics::describe(&registry);
    let auth = auth::Authenticator::new(&config.auth)?;
    auth.start(shutdown.clone()).await;
    let store = store::IdempotencyStore::open(&config.database_url, &config.database).await?;
    let upstreams = connect_upstreams(&registry, config)?;
    let probes =
        upstreams.iter().map(|(name, channel)| (name.clone(), channel.clone(), registry.services_of(name))).collect();
    let gateway = Arc::new(Gateway::new(registry, auth, identity.clone(), store.clone(), upstreams, config, limits));
    // Open streams end at shutdown: the server's graceful shutdown waits for them.
    gateway.streams.close_on(shutdown.clone());
    let backpack_heartbeat = Duration::from_secs(config.streams.heartbeat_secs);
    let own = Routes::builder()
        .add_service(BackpackServiceServer::new(backpack::Backpack::new(gateway.clone(), backpack_heartbeat)))
        .add_service(OperationsServiceServer::new(operations::Operations(gateway.clone())))
        .clone()
        .routes();
    let router = own.into_axum_router().fallback_service(Proxy(gateway.clone()));
    let mut options = ServeOptions::grpc_web(config.cors.layer()?, &config.tls, "gateway.tls")?;
    options.reflect_whole_api = true;
    options.connect = Some(ConnectLayer::new(gateway.registry.pool().clone(), limits.max_message_bytes, DOMAIN));
    options.without_reflection = !config.reflection.served(config.tls.enabled(), config.development);
    let server = spawn_with(&config.listen, SERVICE_NAME, Routes::from(router), limits, options, shutdown.clone())
        .await?
        .draining(drain(gateway.clone()));
    metrics::spawn_lease_sampler(store.clone(), config.clock.clone(), shutdown.clone());
    let scheduler = Scheduler::new(store.db().clone(), config.clock.clone(), shutdown.clone());
    let (idempotency, clock) = (config.idempotency.clone(), config.clock.clone());
    jobs::spawn_idempotency_jobs(&scheduler, store, idempotency, clock, schedules.cleanup, shutdown.clone());
    consistency::spawn(&scheduler, gateway, schedules.consistency);
    jobs::spawn_health_probe(
        probes,
        server.health.clone(),
        Duration::from_secs(config.health_interval_secs.max(1)),
        shutdown,
    );
    Ok(server)
}

/// Waits, at most one lease, for the writes still in flight to record their outcomes
/// (their clients may have gone: the records must not stay `processing`).
async fn drain(gateway: Arc<Gateway>) {
    gateway.tasks.close();
    let in_flight = gateway.tasks.len();
    if in_flight > 0 {
        tracing::info!(in_flight, "draining in-flight requests");
    }
    if tokio::time::timeout(gateway.lease, gateway.tasks.wait()).await.is_err() {
        tracing::warn!(in_flight = gateway.tasks.len(), "in-flight requests still running at shutdown");
    }
}

/// One lazily connected channel per upstream named by the routed services.
fn connect_upstreams(registry: &Registry, config: &GatewayConfig) -> anyhow::Result<HashMap<String, Channel>> {
    registry
        .upstreams()
        .into_iter()
        .map(|name| {
            let url = config
                .upstreams
                .get(&name)
                .ok_or_else(|| anyhow::anyhow!("no upstream configured for {name} (gateway.upstreams.{name})"))?;
            let endpoint = economy_kit::tls::endpoint(url, &config.internal_tls, "gateway.internal_tls")?;
            let channel = endpoint.connect_timeout(Duration::from_secs(2)).connect_lazy();
            Ok((name, channel))
        })
        .collect()
}

#[cfg(test)]
mod test_support {
    use std::path::Path;

    /// Compiles `proto` (as `economy/shop/v1/shop.proto`, beside the real options) into an
    /// encoded descriptor set that keeps custom options.
    pub fn compile(proto: &str) -> Vec<u8> {
        let dir = std::env::temp_dir().join(format!("economy-shop-{}", uuid::Uuid::now_v7()));
        let options = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto/economy/options/v1/options.proto");
        std::fs::create_dir_all(dir.join("economy/options/v1")).expect("dir");
        std::fs::create_dir_all(dir.join("economy/shop/v1")).expect("dir");
        std::fs::copy(options, dir.join("economy/options/v1/options.proto")).expect("copy");
        std::fs::write(dir.join("economy/shop/v1/shop.proto"), proto).expect("write");
        let mut compiler = protox::Compiler::new([&dir]).expect("compiler");
        compiler.include_imports(true).open_file("economy/shop/v1/shop.proto").expect("compile");
        std::fs::remove_dir_all(&dir).expect("cleanup");
        compiler.encode_file_descriptor_set()
    }
}
