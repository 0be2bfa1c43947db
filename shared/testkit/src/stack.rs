//! The stack of [`economy_stack`] for a test: every server on `127.0.0.1:0`, each over a
//! fresh [`TestDatabase`] (SQLite, or PostgreSQL with `ECONOMY_TEST_POSTGRES_URL`), the
//! test secrets, and optionally one shared [`ManualClock`].

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Arc;

use economy_kit::identity::{Caller, Signer};
use economy_kit::time::ManualClock;
use economy_stack::tls::DevPki;
use economy_stack::{RunningStack, Service, StackBuilder, StackConfig};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::{Bearer, IDENTITY_SECRET, JWT_SECRET, TestDatabase, channel, identity, tls_channel};

/// A test stack of `services` (and every service they call must be among them, except
/// behind the gateway, where a missing one answers UNAVAILABLE).
pub fn test_stack(services: &[Service]) -> TestStackBuilder {
    let builder =
        StackBuilder::new().any_port().services(services).identity_secret(IDENTITY_SECRET).jwt_secret(JWT_SECRET);
    TestStackBuilder { builder, services: services.to_vec(), manual_clock: false, tls: None }
}

/// Settings of a test stack before it starts.
#[derive(Debug)]
pub struct TestStackBuilder {
    builder: StackBuilder,
    services: Vec<Service>,
    manual_clock: bool,
    tls: Option<TlsDir>,
}

impl TestStackBuilder {
    /// Changes any setting (a service's intervals, the gateway's limits, …).
    pub fn configure(mut self, configure: impl FnOnce(&mut StackConfig)) -> Self {
        self.builder = self.builder.configure(configure);
        self
    }

    /// Every server reads "now" from one [`ManualClock`] (starting at the system time):
    /// the test moves it ([`TestStack::clock`]) instead of sleeping.
    pub fn manual_clock(mut self) -> Self {
        self.manual_clock = true;
        self
    }

    /// Every server over TLS (the services requiring client certificates) with a fresh
    /// development PKI in a temporary directory, removed with the stack
    /// (`economy_stack::StackConfig::set_tls`); [`TestStack::channel`] trusts its CA and
    /// presents its client certificate.
    pub fn tls(mut self) -> Self {
        let dir = std::env::temp_dir().join(format!("economy-tls-{}", uuid::Uuid::now_v7()));
        let pki = DevPki::generate(&dir).expect("a development PKI");
        self.builder = self.builder.tls(&pki);
        self.tls = Some(TlsDir { dir, pki });
        self
    }

    /// Creates a fresh database per server and starts them; panics when anything fails.
    pub async fn start(self) -> TestStack {
        let Self { mut builder, services, manual_clock, tls } = self;
        let mut databases = Vec::new();
        for service in Service::ALL.into_iter().filter(|service| services.contains(service)) {
            let database = TestDatabase::new().await.expect("a fresh test database");
            builder = builder.database_url(service, database.url.clone());
            databases.push((service, database));
        }
        let clock = manual_clock.then(|| Arc::new(ManualClock::default()));
        if let Some(clock) = &clock {
            builder = builder.clock(clock.clone());
        }
        let stack = builder.start().await.expect("the test stack starts");
        TestStack { stack, clock, databases, tls }
    }
}

/// A running test stack. Dereferences to the [`RunningStack`] (addresses, settings,
/// `stop_service` / `start_service`).
#[derive(Debug)]
pub struct TestStack {
    stack: RunningStack,
    clock: Option<Arc<ManualClock>>,
    databases: Vec<(Service, TestDatabase)>,
    tls: Option<TlsDir>,
}

/// The development PKI of a TLS test stack and its directory (removed on drop).
#[derive(Debug)]
struct TlsDir {
    dir: PathBuf,
    pki: DevPki,
}

impl Drop for TlsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Deref for TestStack {
    type Target = RunningStack;

    fn deref(&self) -> &RunningStack {
        &self.stack
    }
}

impl TestStack {
    /// The development PKI of a stack built with [`TestStackBuilder::tls`].
    pub fn pki(&self) -> Option<&DevPki> {
        self.tls.as_ref().map(|tls| &tls.pki)
    }

    /// `http://host:port` (`https://` over TLS) of `service`; panics unless it runs.
    pub fn url_of(&self, service: Service) -> String {
        self.stack.url(service).unwrap_or_else(|| panic!("the {service} is not running"))
    }

    /// The database of `service` (its URL; dropped with the stack).
    pub fn database(&self, service: Service) -> &TestDatabase {
        self.databases
            .iter()
            .find_map(|(owner, database)| (*owner == service).then_some(database))
            .unwrap_or_else(|| panic!("the {service} has no database in this stack"))
    }

    /// The manual clock every server reads; panics unless the stack was built with
    /// [`TestStackBuilder::manual_clock`].
    pub fn clock(&self) -> Arc<ManualClock> {
        self.clock.clone().expect("the stack runs on the system clock: build it with manual_clock()")
    }

    /// A connected channel to `service` (over TLS with the stack's CA and client
    /// certificate when it has a PKI).
    pub async fn channel(&self, service: Service) -> Channel {
        match self.pki() {
            Some(pki) => tls_channel(&self.url_of(service), &pki.client_tls()).await.expect("connected over TLS"),
            None => channel(&self.url_of(service)).await,
        }
    }

    /// A channel to the gateway sending a valid token of `user_id` with `role_level`.
    pub async fn authed(&self, user_id: i64, role_level: i32) -> InterceptedService<Channel, Bearer> {
        InterceptedService::new(self.channel(Service::Gateway).await, Bearer::user(user_id, role_level))
    }

    /// A channel straight to `service`, signing the internal identity of `caller`.
    pub async fn signed(&self, service: Service, caller: Caller) -> InterceptedService<Channel, Signer> {
        InterceptedService::new(self.channel(service).await, identity().signer(caller))
    }

    /// Stops `service` (its address and database stay); panics on failure.
    pub async fn stop(&mut self, service: Service) {
        self.stack.stop_service(service).await.expect("the service stops");
    }

    /// Starts `service` again on its address and database; panics on failure.
    pub async fn restart(&mut self, service: Service) {
        self.stack.start_service(service).await.expect("the service starts again");
    }
}
