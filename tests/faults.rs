//! The fault suite ("Trustworthy under faults"): the five services run as separate
//! processes from their own binaries (`economy-gateway`, `economy-ledger`, `economy-items`,
//! `economy-redemption`, `economy-market`, next to the test executable), each on fresh
//! databases (SQLite files, or PostgreSQL databases when `ECONOMY_TEST_POSTGRES_URL` is
//! set). Under a bounded load sent through the gateway by real clients (ledger transfers,
//! market purchases of asset and item listings, redemptions, purchases of the shop's
//! offers — one of them with a stock smaller than the purchases tried — and reward
//! bundles), every service is killed with SIGKILL at seeded random moments and restarted
//! on the same port and database; on PostgreSQL the server is also restarted once with
//! `-m immediate` when `ECONOMY_TEST_POSTGRES_RESTART` names a script that does it. A
//! client that loses an answer retries with the same idempotency key and body until it
//! gets a final one.
//!
//! Afterwards: every write answered OK exactly once; every listing sold, every trade
//! completed, every order fulfilled (after the recovery jobs ran); every exchange
//! answered OK completed and listed once, its items owned by its user with its
//! correlation id on their grant, no exchange unfinished, no offer sold past its stock
//! (OFFER_SOLD_OUT is the one final error expected); the ledger reconciles and the
//! gateway's cross-service check finds nothing; asset totals are conserved (shop revenue
//! and issuance included) and balances equal what the OK answers imply; no key stayed
//! unanswered longer than the gateway's lease + 5 s after the last fault.
//!
//! `ECONOMY_FAULTS_SEED=<n>` replays a run's schedule and workload choices (the seed is
//! printed); the binaries are built by `cargo build -p economy-gateway -p economy-ledger
//! -p economy-items -p economy-redemption -p economy-market` (or `cargo test --workspace`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use economy_kit::testing::{POSTGRES_URL_ENV, TestDatabase};
use economy_proto::gateway::v1 as gateway_pb;
use economy_proto::gateway::v1::operations_service_client::OperationsServiceClient;
use economy_proto::items::v1 as items_pb;
use economy_proto::items::v1::item_service_client::ItemServiceClient;
use economy_proto::ledger::v1 as ledger_pb;
use economy_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use economy_proto::market::v1 as market_pb;
use economy_proto::market::v1::market_service_client::MarketServiceClient;
use economy_proto::redemption::v1 as redemption_pb;
use economy_proto::redemption::v1::redemption_service_client::RedemptionServiceClient;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tokio::process::{Child, Command};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Environment variable: the seed to replay.
const SEED_ENV: &str = "ECONOMY_FAULTS_SEED";
/// Environment variable: an executable restarting the PostgreSQL server immediately.
const POSTGRES_RESTART_ENV: &str = "ECONOMY_TEST_POSTGRES_RESTART";

/// The services, in start order (the gateway last, in front of the others).
const SERVICES: [&str; 5] = ["ledger", "items", "redemption", "market", "gateway"];

/// The upstream deadline of every service (`server.request_timeout_secs`).
const REQUEST_TIMEOUT_SECS: u64 = 5;
/// `gateway.idempotency.lease_margin_secs`.
const LEASE_MARGIN_SECS: u64 = 2;
/// A gateway claim's lease: upstream timeout + margin.
const LEASE: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + LEASE_MARGIN_SECS);
/// How long after the last fault (or its first attempt) a key may stay unanswered.
const ANSWER_BOUND: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS + LEASE_MARGIN_SECS + 5);

/// What the gateway logs when a retry takes over a claim its dead owner left.
const TAKEOVER_LOG: &str = "idempotency record taken over past its lease";

/// The admin (role 100) who sets up, posts transfers and reads everything.
const ADMIN: i64 = 1;
/// The merchant staff (role 50) who fulfils redemption orders.
const STAFF: i64 = 2;
/// The players.
const USERS: [i64; 6] = [1001, 1002, 1003, 1004, 1005, 1006];
/// What every player is credited at setup.
const INITIAL: [(&str, i64); 3] = [("DIAMOND", 100_000), ("red_shard", 5_000), ("POINTS", 20_000)];
/// The assets of the catalog: the funded ones and the shop's reward.
const ASSETS: [(&str, ledger_pb::AssetKind); 4] = [
    ("DIAMOND", ledger_pb::AssetKind::Currency),
    ("red_shard", ledger_pb::AssetKind::Fragment),
    ("POINTS", ledger_pb::AssetKind::Currency),
    (GEM, ledger_pb::AssetKind::Currency),
];
/// The reward asset of offers and bundles, credited from SYSTEM_ISSUANCE.
const GEM: &str = "GEM";
/// The item template offers and bundles grant.
const CHEST: &str = "chest";
/// Where offer payments are settled (`market.offer_revenue_account`'s default).
const REVENUE_ACCOUNT: &str = "SYSTEM_SHOP_REVENUE";
/// Business type of the bundles (a lottery's payouts).
const BUNDLE_TYPE: &str = "LOTTERY_REWARD";
/// How bundles are named in the write log.
const BUNDLE_WHAT: &str = "grant bundle";
/// Items granted at setup for item listings and for redemptions.
const SWORDS: usize = 40;
const PRIZES: usize = 40;

/// An offer of the shop: a 2-asset price and a reward of gems and chests, per unit.
struct OfferSpec {
    id: &'static str,
    /// How its purchases are named in the write log.
    what: &'static str,
    price: [(&'static str, i64); 2],
    gems: i64,
    chests: i64,
    stock: Option<i64>,
}

/// The shop: one unlimited offer, and one whose stock is smaller than the purchases the
/// load tries (5 % of its operations, 1 or 2 units each).
const OFFERS: [OfferSpec; 2] = [
    OfferSpec {
        id: "fault-pack",
        what: "purchase offer",
        price: [("POINTS", 40), ("red_shard", 3)],
        gems: 15,
        chests: 1,
        stock: None,
    },
    OfferSpec {
        id: "fault-limited",
        what: "purchase limited offer",
        price: [("POINTS", 90), ("DIAMOND", 25)],
        gems: 40,
        chests: 1,
        stock: Some(3),
    },
];

/// Concurrent clients.
const WORKERS: usize = 4;
/// Operations after the last fault, per worker.
const TAIL_OPS: usize = 4;
/// Bounds of the load: operations and time.
const MAX_OPS: usize = 1_200;
const LOAD_LIMIT: Duration = Duration::from_secs(150);
/// How long one write may be retried before the suite gives up on it.
const WRITE_LIMIT: Duration = Duration::from_secs(90);
/// How long one attempt may take at the client.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT_SECS * 3);
/// How long the recovery jobs get to settle everything.
const RECOVERY_LIMIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_survive_kills_and_restarts_under_load() -> Result<()> {
    let seed = match std::env::var(SEED_ENV) {
        Ok(seed) => seed.trim().parse().with_context(|| format!("{SEED_ENV}={seed} is not a u64"))?,
        Err(_) => rand::rng().random(),
    };
    let on_postgres = std::env::var(POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
    let backend = if on_postgres { "PostgreSQL" } else { "SQLite" };
    println!("fault suite: seed {seed} ({SEED_ENV}={seed} replays it), backend {backend}");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);

    let cluster = Cluster::start(on_postgres).await?;
    let result = run(seed, &mut rng, on_postgres, cluster).await;
    println!("fault suite: seed {seed}, backend {backend}, {:.1} s", started.elapsed().as_secs_f64());
    if result.is_err() {
        println!("fault suite FAILED: replay with {SEED_ENV}={seed}");
    }
    result
}

async fn run(seed: u64, rng: &mut StdRng, on_postgres: bool, mut cluster: Cluster) -> Result<()> {
    let faults = Faults::default();
    let client = Client::new(&cluster)?;
    let setup = setup(&client, rng).await.map_err(|error| cluster.with_logs(error))?;
    println!("setup done: {} swords, {} prizes", setup.swords.len(), setup.prizes.len());

    // The schedule: every service once (in a seeded order), two more at random, and the
    // PostgreSQL server once when asked.
    let mut targets: Vec<Target> = SERVICES.iter().map(|name| Target::Service(name)).collect();
    targets.shuffle(rng);
    for _ in 0..2 {
        let extra = SERVICES[rng.random_range(0..SERVICES.len())];
        let at = rng.random_range(1..=targets.len());
        targets.insert(at, Target::Service(extra));
    }
    match (on_postgres, std::env::var_os(POSTGRES_RESTART_ENV).filter(|script| !script.is_empty())) {
        (true, Some(script)) => {
            let at = rng.random_range(1..targets.len());
            targets.insert(at, Target::Postgres(PathBuf::from(script)));
        }
        (true, None) => println!("note: {POSTGRES_RESTART_ENV} is not set: the PostgreSQL restart is skipped"),
        (false, _) => println!("note: SQLite backend: no PostgreSQL restart"),
    }
    let schedule: Vec<Fault> = targets
        .into_iter()
        .map(|target| Fault {
            target,
            gap: Duration::from_millis(rng.random_range(700..=1_800)),
            down: Duration::from_millis(rng.random_range(0..=1_200)),
        })
        .collect();
    println!(
        "schedule: {}",
        schedule
            .iter()
            .map(|fault| format!("{} (after {:?}, down {:?})", fault.target, fault.gap, fault.down))
            .collect::<Vec<_>>()
            .join(", ")
    );

    // The load and the faults, at once.
    let state = Arc::new(Load::new(setup));
    let chaos_done = Arc::new(AtomicBool::new(false));
    let load_started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let (client, state, chaos_done) = (client.clone(), state.clone(), chaos_done.clone());
        let worker_seed = seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(worker as u64 + 1));
        workers.spawn(async move { work(worker_seed, &client, &state, &chaos_done, load_started).await });
    }
    let chaos = {
        let (faults, chaos_done) = (faults.clone(), chaos_done.clone());
        tokio::spawn(async move {
            let outcome = inflict(&mut cluster, schedule, &faults).await;
            chaos_done.store(true, Ordering::SeqCst);
            (cluster, outcome)
        })
    };
    let mut worker_errors = Vec::new();
    while let Some(joined) = workers.join_next().await {
        if let Err(error) = joined.context("a load worker panicked")? {
            worker_errors.push(format!("{error:#}"));
        }
    }
    let (mut cluster, chaos_outcome) = chaos.await.context("the fault task panicked")?;
    let load_time = load_started.elapsed();
    if let Err(error) = chaos_outcome {
        return Err(cluster.with_logs(error.context("inflicting a fault failed")));
    }
    let ops = state.ops.load(Ordering::SeqCst);
    println!("load: {ops} operations by {WORKERS} clients in {:.1} s", load_time.as_secs_f64());
    ensure!(worker_errors.is_empty(), "load workers failed:\n{}", worker_errors.join("\n"));
    ensure!(chaos_done.load(Ordering::SeqCst), "the fault schedule did not finish");
    for name in SERVICES {
        ensure!(faults.killed(name) >= 1, "{name} was never killed");
    }
    cluster.ensure_running().await?;

    let log = client.log.lock().map(|log| log.clone()).unwrap_or_default();
    println!("answers: {}", lost_summary(&log));
    let gateway_log = std::fs::read_to_string(&cluster.service("gateway")?.log).unwrap_or_default();
    println!("claims taken over past their lease: {}", gateway_log.matches(TAKEOVER_LOG).count());
    let checked = check(&client, &state, &faults).await;
    let summary = summary(&state, &faults, &log);
    println!("{summary}");
    checked.map_err(|error| cluster.with_logs(error))?;
    cluster.stop().await;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------

/// One service process: its binary, configuration, port and log file.
struct Service {
    name: &'static str,
    binary: PathBuf,
    config: PathBuf,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Service {
    async fn start(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ECONOMY_") {
                command.env_remove(name);
            }
        }
        command
            .arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_listening().await
    }

    /// Waits until the port accepts connections (the service binds after migrating).
    async fn wait_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("{} exited ({status}) while starting; log:\n{}", self.name, tail(&self.log, 60));
            }
            ensure!(Instant::now() < deadline, "{} not listening after 60 s; log:\n{}", self.name, tail(&self.log, 60));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGKILL, then waits for the process to be gone (its port free).
    async fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }
}

/// The five processes, their databases and the directory of their files.
struct Cluster {
    dir: PathBuf,
    services: Vec<Service>,
    gateway: String,
    jwt_secret: String,
    databases: Vec<TestDatabase>,
}

impl Cluster {
    async fn start(on_postgres: bool) -> Result<Self> {
        let dir = std::env::temp_dir().join(format!("economy-faults-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir)?;
        let profile_dir = service_binary_dir()?;
        // Five distinct free ports, held together while chosen.
        let listeners: Vec<std::net::TcpListener> =
            (0..SERVICES.len()).map(|_| std::net::TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
        let ports: Vec<u16> =
            listeners.iter().map(|listener| listener.local_addr().map(|addr| addr.port())).collect::<Result<_, _>>()?;
        drop(listeners);
        let port = |name: &str| ports[SERVICES.iter().position(|service| *service == name).unwrap_or(0)];
        let url = |name: &str| format!("http://127.0.0.1:{}", port(name));
        let identity_secret = format!("{:032x}", rand::rng().random::<u128>());
        let jwt_secret = format!("{:032x}", rand::rng().random::<u128>());
        let mut databases = Vec::new();
        let mut services = Vec::new();
        for name in SERVICES {
            let database_url = if on_postgres {
                let database = TestDatabase::new().await?;
                // Acknowledged commits must survive the server's immediate restart: the
                // test server may run with `synchronous_commit=off`, which loses the last
                // ones in a crash (the suite would then see OK answers undone).
                let separator = if database.url.contains('?') { '&' } else { '?' };
                let url = format!("{}{separator}options=-c%20synchronous_commit%3Don", database.url);
                databases.push(database);
                url
            } else {
                format!("sqlite://{}", dir.join(format!("{name}.db")).display())
            };
            let section = match name {
                "ledger" => "hold_expiry_interval_secs = 1\n".to_owned(),
                "items" => "lock_expiry_interval_secs = 1\nitem_expiry_interval_secs = 5\n".to_owned(),
                "redemption" => format!(
                    "items_url = \"{}\"\noutbox_interval_secs = 1\nlocking_timeout_secs = 10\n\
                     failed_fulfils_per_minute = 1000\n",
                    url("items")
                ),
                "market" => format!(
                    "ledger_url = \"{}\"\nitems_url = \"{}\"\nrecovery_interval_secs = 1\nstale_after_secs = {}\n",
                    url("ledger"),
                    url("items"),
                    REQUEST_TIMEOUT_SECS + 1
                ),
                _ => format!(
                    // HS256 test tokens: a development gateway (docs/gateway.md, "Start-up refusals").
                    "development = true\nrate_limit_per_second = 10000\nrate_limit_burst = 10000\nhealth_interval_secs = 1\n\
                     [gateway.idempotency]\nlease_margin_secs = {LEASE_MARGIN_SECS}\ntimeout_job_interval_secs = 1\n\
                     [gateway.auth]\nhs256_secret = \"{jwt_secret}\"\n[gateway.upstreams]\nledger = \"{}\"\n\
                     items = \"{}\"\nredemption = \"{}\"\nmarket = \"{}\"\n",
                    url("ledger"),
                    url("items"),
                    url("redemption"),
                    url("market")
                ),
            };
            let config = format!(
                "[{name}]\nlisten = \"127.0.0.1:{}\"\ndatabase_url = \"{database_url}\"\n{section}\n\
                 [identity]\nsecret = \"{identity_secret}\"\n\n[server]\nrequest_timeout_secs = {REQUEST_TIMEOUT_SECS}\n\n\
                 [log]\nfilter = \"info\"\n",
                port(name)
            );
            let config_file = dir.join(format!("{name}.toml"));
            std::fs::write(&config_file, config)?;
            let binary = profile_dir.join(format!("economy-{name}{}", std::env::consts::EXE_SUFFIX));
            ensure!(
                binary.is_file(),
                "{} is missing: build the service binaries with `cargo build -p economy-gateway -p economy-ledger \
                 -p economy-items -p economy-redemption -p economy-market`",
                binary.display()
            );
            services.push(Service {
                name,
                binary,
                config: config_file,
                port: port(name),
                log: dir.join(format!("{name}.log")),
                child: None,
            });
        }
        let mut cluster = Self { dir, services, gateway: url("gateway"), jwt_secret, databases };
        for service in &mut cluster.services {
            service.start().await?;
        }
        Ok(cluster)
    }

    fn service(&mut self, name: &str) -> Result<&mut Service> {
        self.services.iter_mut().find(|service| service.name == name).with_context(|| format!("no service {name}"))
    }

    /// Fails when a service exited on its own.
    async fn ensure_running(&mut self) -> Result<()> {
        for service in &mut self.services {
            let exited = match service.child.as_mut() {
                Some(child) => child.try_wait()?,
                None => bail!("{} is not running", service.name),
            };
            if let Some(status) = exited {
                bail!("{} exited on its own ({status}); log:\n{}", service.name, tail(&service.log, 80));
            }
        }
        Ok(())
    }

    /// `error` with the end of every service's log.
    fn with_logs(&self, error: anyhow::Error) -> anyhow::Error {
        let mut logs = String::new();
        for service in &self.services {
            let _ = write!(logs, "\n--- {} ({}) ---\n{}", service.name, service.log.display(), tail(&service.log, 40));
        }
        error.context(format!("service logs (kept in {}):{logs}", self.dir.display()))
    }

    /// Kills every process and removes the files (the databases are dropped after).
    async fn stop(mut self) {
        for service in &mut self.services {
            let _ = service.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        drop(std::mem::take(&mut self.databases));
    }
}

/// `target/<profile>/`, where cargo puts the service binaries, found from the test
/// executable (`target/<profile>/deps/<test>`).
fn service_binary_dir() -> Result<PathBuf> {
    let test_exe = std::env::current_exe()?;
    let dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable is not inside target/<profile>/deps")?;
    Ok(dir.to_path_buf())
}

/// The last `lines` lines of a log file.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------

/// What a fault hits.
#[derive(Debug, Clone)]
enum Target {
    /// SIGKILL the service, restart it on the same port and database.
    Service(&'static str),
    /// Run the script that restarts the PostgreSQL server with `-m immediate`.
    Postgres(PathBuf),
}

impl std::fmt::Display for Target {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Service(name) => write!(formatter, "kill {name}"),
            Self::Postgres(_) => write!(formatter, "restart postgres"),
        }
    }
}

/// One scheduled fault: `gap` after the previous one recovered, down for `down`.
struct Fault {
    target: Target,
    gap: Duration,
    down: Duration,
}

/// When each fault struck.
#[derive(Clone, Default)]
struct Faults(Arc<Mutex<Vec<(Instant, String)>>>);

impl Faults {
    fn record(&self, what: &str) -> Instant {
        let now = Instant::now();
        if let Ok(mut faults) = self.0.lock() {
            faults.push((now, what.to_owned()));
        }
        now
    }

    /// The last fault at or before `instant`; only those named `what` when given.
    fn last_before(&self, instant: Instant, what: Option<&str>) -> Option<Instant> {
        let faults = self.0.lock().ok()?;
        let matching = faults.iter().filter(|(at, fault)| *at <= instant && what.is_none_or(|what| fault == what));
        matching.map(|(at, _)| *at).max()
    }

    fn killed(&self, name: &str) -> usize {
        let what = format!("kill {name}");
        self.0.lock().map(|faults| faults.iter().filter(|(_, fault)| *fault == what).count()).unwrap_or(0)
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.0.lock().map(|faults| faults.clone()).unwrap_or_default()
    }
}

/// Runs the schedule against the cluster.
async fn inflict(cluster: &mut Cluster, schedule: Vec<Fault>, faults: &Faults) -> Result<()> {
    for fault in schedule {
        tokio::time::sleep(fault.gap).await;
        match &fault.target {
            Target::Service(name) => {
                let service = cluster.service(name)?;
                faults.record(&fault.target.to_string());
                service.kill().await?;
                tokio::time::sleep(fault.down).await;
                let restarting = Instant::now();
                service.start().await?;
                println!("fault: killed {name}, down {:?}, restarted in {:?}", fault.down, restarting.elapsed());
            }
            Target::Postgres(script) => {
                let restarting = faults.record(&fault.target.to_string());
                let log = std::fs::File::create(cluster.dir.join("postgres-restart.log"))?;
                let status = Command::new(script)
                    .stdin(Stdio::null())
                    .stdout(log.try_clone()?)
                    .stderr(log)
                    .status()
                    .await
                    .with_context(|| format!("cannot run {}", script.display()))?;
                ensure!(
                    status.success(),
                    "{} failed ({status}):\n{}",
                    script.display(),
                    tail(&cluster.dir.join("postgres-restart.log"), 20)
                );
                println!("fault: PostgreSQL restarted immediately in {:?}", restarting.elapsed());
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// One write as the client saw it.
#[derive(Debug, Clone)]
struct WriteLog {
    what: String,
    key: String,
    first_sent: Instant,
    /// Answers that were lost or not final (code, reason, when).
    lost: Vec<(Code, String, Instant)>,
    /// The final answer: `None` when the suite gave up.
    answer: Option<(Code, String, Instant)>,
    /// The gateway replayed the stored outcome (`idempotent-replayed`).
    gateway_replay: bool,
}

/// A gateway client with its write log.
#[derive(Clone)]
struct Client {
    channel: Channel,
    jwt_secret: String,
    log: Arc<Mutex<Vec<WriteLog>>>,
}

/// An OK answer of a write and whether the gateway marked it redacted.
struct Answer<T> {
    body: T,
    redacted: bool,
}

/// Codes after which the answer is lost: the client retries with the same key.
fn is_lost(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
    )
}

fn describe(status: &Status) -> String {
    let reason = economy_kit::error::reason(status).unwrap_or_default();
    format!("{:?} {reason} {}", status.code(), status.message())
}

impl Client {
    fn new(cluster: &Cluster) -> Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(cluster.gateway.clone())?
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        Ok(Self { channel, jwt_secret: cluster.jwt_secret.clone(), log: Arc::default() })
    }

    fn request<T>(&self, user: i64, role: i32, key: Option<&str>, body: T) -> Result<Request<T>> {
        let token = economy_gateway::auth::mint_hs256(&self.jwt_secret, user, role, 3_600)?;
        let mut request = Request::new(body);
        request.set_timeout(ATTEMPT_TIMEOUT);
        request.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {token}"))?);
        if let Some(key) = key {
            request.metadata_mut().insert("idempotency-key", MetadataValue::try_from(key)?);
        }
        Ok(request)
    }

    /// Sends a write with a fresh idempotency key, retrying lost answers with the same key
    /// and body until a final one. `Ok(None)` for a final error (logged).
    async fn write<Req, Resp, Call, Fut>(
        &self,
        what: &str,
        (user, role): (i64, i32),
        body: Req,
        call: Call,
    ) -> Result<Option<Answer<Resp>>>
    where
        Req: Clone,
        Call: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let key = uuid::Uuid::now_v7().to_string();
        let first_sent = Instant::now();
        let mut entry = WriteLog {
            what: what.to_owned(),
            key: key.clone(),
            first_sent,
            lost: Vec::new(),
            answer: None,
            gateway_replay: false,
        };
        let mut backoff = Duration::from_millis(50);
        let outcome = loop {
            let request = self.request(user, role, Some(&key), body.clone())?;
            let attempt =
                tokio::time::timeout(ATTEMPT_TIMEOUT + Duration::from_secs(1), call(self.channel.clone(), request));
            match attempt.await {
                Ok(Ok(response)) => {
                    let metadata = response.metadata();
                    entry.gateway_replay = metadata.get("idempotent-replayed").is_some();
                    let redacted = metadata.get("idempotent-redacted").is_some();
                    entry.answer = Some((Code::Ok, String::new(), Instant::now()));
                    break Some(Answer { body: response.into_inner(), redacted });
                }
                Ok(Err(status)) if is_lost(&status) => {
                    entry.lost.push((status.code(), describe(&status), Instant::now()));
                }
                Ok(Err(status)) => {
                    entry.answer = Some((status.code(), describe(&status), Instant::now()));
                    break None;
                }
                Err(_) => entry.lost.push((Code::DeadlineExceeded, "client timeout".into(), Instant::now())),
            }
            if first_sent.elapsed() > WRITE_LIMIT {
                break None;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        };
        let given_up = entry.answer.is_none();
        let last_lost = entry.lost.last().map(|(_, what, _)| what.clone()).unwrap_or_default();
        if let Ok(mut log) = self.log.lock() {
            log.push(entry);
        }
        ensure!(!given_up, "{what} (key {key}): no final answer after {WRITE_LIMIT:?}; last: {last_lost}");
        Ok(outcome)
    }

    /// A read as `ADMIN`, retried while services restart.
    async fn read<Req, Resp, Call, Fut>(&self, body: Req, call: Call) -> Result<Resp>
    where
        Req: Clone,
        Call: Fn(Channel, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let started = Instant::now();
        loop {
            let request = self.request(ADMIN, 100, None, body.clone())?;
            match call(self.channel.clone(), request).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if is_lost(&status) && started.elapsed() < WRITE_LIMIT => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(status) => bail!("read failed: {}", describe(&status)),
            }
        }
    }
}

fn user(id: i64) -> Option<ledger_pb::AccountRef> {
    Some(ledger_pb::AccountRef { account: Some(ledger_pb::account_ref::Account::UserId(id)) })
}

fn system(name: &str) -> Option<ledger_pb::AccountRef> {
    Some(ledger_pb::AccountRef { account: Some(ledger_pb::account_ref::Account::System(name.to_owned())) })
}

// ---------------------------------------------------------------------------------------
// Setup and load
// ---------------------------------------------------------------------------------------

/// What the setup created.
struct Setup {
    issued: BTreeMap<String, i64>,
    swords: Vec<(String, i64)>,
    prizes: Vec<(String, i64)>,
}

const ADMIN_ROLE: (i64, i32) = (ADMIN, 100);

async fn setup(client: &Client, rng: &mut StdRng) -> Result<Setup> {
    for (code, kind) in ASSETS {
        let asset =
            ledger_pb::Asset { code: code.into(), display_name: code.into(), kind: kind as i32, ..Default::default() };
        let body = ledger_pb::DefineAssetRequest { asset: Some(asset) };
        let answer = client
            .write("define asset", ADMIN_ROLE, body, |channel, request| async move {
                LedgerServiceClient::new(channel).define_asset(request).await
            })
            .await?;
        ensure!(answer.is_some(), "defining {code} failed");
    }
    for (code, kind, redeemable) in [
        ("sword", items_pb::ItemKind::Equipment, false),
        ("prize", items_pb::ItemKind::Product, true),
        (CHEST, items_pb::ItemKind::Equipment, false),
    ] {
        let template = items_pb::ItemTemplate {
            code: code.into(),
            display_name: code.into(),
            kind: kind as i32,
            redeemable,
            ..Default::default()
        };
        let body = items_pb::DefineTemplateRequest { template: Some(template) };
        let answer = client
            .write("define template", ADMIN_ROLE, body, |channel, request| async move {
                ItemServiceClient::new(channel).define_template(request).await
            })
            .await?;
        ensure!(answer.is_some(), "defining template {code} failed");
    }
    let mut issued = BTreeMap::new();
    for user_id in USERS {
        for (asset, amount) in INITIAL {
            let body = ledger_pb::AdjustBalanceRequest {
                idempotency_key: String::new(),
                user_id,
                asset_code: asset.into(),
                direction: ledger_pb::AdjustDirection::Credit as i32,
                amount,
                reason: "fault suite".into(),
            };
            let answer = client
                .write("adjust", ADMIN_ROLE, body, |channel, request| async move {
                    LedgerServiceClient::new(channel).adjust_balance(request).await
                })
                .await?;
            ensure!(answer.is_some(), "crediting {user_id} failed");
            *issued.entry(asset.to_owned()).or_insert(0) += amount;
        }
    }
    let mut grant = async |template: &str, count: usize| -> Result<Vec<(String, i64)>> {
        let mut items = Vec::new();
        for _ in 0..count {
            let owner = USERS[rng.random_range(0..USERS.len())];
            let body = items_pb::GrantItemRequest {
                owner_user_id: owner,
                template_code: template.into(),
                reason: "fault suite".into(),
                ..Default::default()
            };
            let answer = client
                .write("grant", ADMIN_ROLE, body, |channel, request| async move {
                    ItemServiceClient::new(channel).grant_item(request).await
                })
                .await?
                .with_context(|| format!("granting a {template} failed"))?;
            let item = answer.body.item.context("grant without item")?;
            items.push((item.id, owner));
        }
        Ok(items)
    };
    let swords = grant("sword", SWORDS).await?;
    let prizes = grant("prize", PRIZES).await?;
    for offer in &OFFERS {
        define_offer(client, offer).await?;
    }
    Ok(Setup { issued, swords, prizes })
}

fn amount(asset_code: &str, amount: i64) -> market_pb::AssetAmount {
    market_pb::AssetAmount { asset_code: asset_code.into(), amount }
}

/// `gems` and `chests` as a reward.
fn reward(gems: i64, chests: i64) -> market_pb::Reward {
    let chest = market_pb::ItemReward { template_code: CHEST.into(), quantity: chests, ..Default::default() };
    market_pb::Reward { assets: vec![amount(GEM, gems)], items: vec![chest] }
}

async fn define_offer(client: &Client, offer: &OfferSpec) -> Result<()> {
    let body = market_pb::DefineOfferRequest {
        offer_id: offer.id.into(),
        display_name: offer.id.into(),
        price: offer.price.iter().map(|(asset, price)| amount(asset, *price)).collect(),
        reward: Some(reward(offer.gems, offer.chests)),
        stock: offer.stock,
        ..Default::default()
    };
    let answer = client
        .write("define offer", ADMIN_ROLE, body, |channel, request| async move {
            MarketServiceClient::new(channel).define_offer(request).await
        })
        .await?;
    ensure!(answer.is_some(), "defining offer {} failed", offer.id);
    Ok(())
}

/// An item instance and its owner.
type Owned = (String, i64);

/// What the OK answers imply, and the pools the workers draw from.
struct Load {
    ops: AtomicUsize,
    pools: Mutex<(Vec<Owned>, Vec<Owned>)>,
    expected: Mutex<Expected>,
}

#[derive(Default)]
struct Expected {
    issued: BTreeMap<String, i64>,
    /// (user, asset) -> total.
    balances: BTreeMap<(i64, String), i64>,
    fees: i64,
    transfers: usize,
    /// Listing id -> kind (`asset` / `item`).
    listings: BTreeMap<String, &'static str>,
    /// Trade ids of OK purchases.
    trades: BTreeSet<String>,
    /// Sword -> owner.
    swords: BTreeMap<String, i64>,
    /// Order id -> prize.
    orders: BTreeMap<String, String>,
    /// Prizes whose fulfilment answered OK.
    used: BTreeSet<String>,
    /// Exchange id -> what its OK answer (a purchase or a bundle) implies.
    exchanges: BTreeMap<String, ExpectedExchange>,
    /// Asset -> what SYSTEM_SHOP_REVENUE was paid.
    revenue: BTreeMap<String, i64>,
}

/// A completed exchange as its OK answer described it.
#[derive(Debug, Clone)]
struct ExpectedExchange {
    user: i64,
    /// The offer bought; empty for a bundle.
    offer: String,
    quantity: i64,
    /// Chests granted.
    chests: usize,
    correlation_id: String,
}

impl Expected {
    fn add(&mut self, user: i64, asset: &str, amount: i64) {
        *self.balances.entry((user, asset.to_owned())).or_insert(0) += amount;
    }

    /// Books a completed exchange: `paid` from the user to the revenue account, its
    /// reward assets issued to the user.
    fn exchange(&mut self, exchange: &market_pb::Exchange, expected: ExpectedExchange) -> Result<()> {
        for paid in &exchange.paid {
            self.add(exchange.user_id, &paid.asset_code, -paid.amount);
            *self.revenue.entry(paid.asset_code.clone()).or_insert(0) += paid.amount;
        }
        for granted in &exchange.granted_assets {
            self.add(exchange.user_id, &granted.asset_code, granted.amount);
            *self.issued.entry(granted.asset_code.clone()).or_insert(0) += granted.amount;
        }
        let previous = self.exchanges.insert(exchange.id.clone(), expected);
        ensure!(previous.is_none(), "exchange {} answered twice", exchange.id);
        Ok(())
    }
}

impl Load {
    fn new(setup: Setup) -> Self {
        let mut expected = Expected { issued: setup.issued.clone(), ..Expected::default() };
        for user in USERS {
            for (asset, amount) in INITIAL {
                expected.add(user, asset, amount);
            }
        }
        expected.swords = setup.swords.iter().cloned().collect();
        Self {
            ops: AtomicUsize::new(0),
            pools: Mutex::new((setup.swords, setup.prizes)),
            expected: Mutex::new(expected),
        }
    }

    fn expected(&self) -> std::sync::MutexGuard<'_, Expected> {
        self.expected.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take_sword(&self) -> Option<(String, i64)> {
        self.pools.lock().ok()?.0.pop()
    }

    fn take_prize(&self) -> Option<(String, i64)> {
        self.pools.lock().ok()?.1.pop()
    }
}

/// One client: seeded operations with think time until the faults are over (and a few
/// after), within the load's bounds.
async fn work(seed: u64, client: &Client, state: &Load, chaos_done: &AtomicBool, started: Instant) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut tail = 0;
    while tail < TAIL_OPS {
        if chaos_done.load(Ordering::SeqCst) {
            tail += 1;
        }
        if state.ops.fetch_add(1, Ordering::SeqCst) >= MAX_OPS || started.elapsed() > LOAD_LIMIT {
            break;
        }
        let roll = rng.random_range(0..100);
        let done = match roll {
            0..15 => item_trade(client, state, &mut rng).await?,
            15..30 => redemption(client, state, &mut rng).await?,
            30..40 => offer_purchase(client, state, &mut rng, &OFFERS[0]).await.map(|()| true)?,
            40..45 => offer_purchase(client, state, &mut rng, &OFFERS[1]).await.map(|()| true)?,
            45..55 => bundle(client, state, &mut rng).await.map(|()| true)?,
            _ => false,
        };
        if !done {
            if roll < 75 {
                transfer(client, state, &mut rng).await?;
            } else {
                asset_trade(client, state, &mut rng).await?;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(40..=120))).await;
    }
    Ok(())
}

fn two_users(rng: &mut StdRng) -> (i64, i64) {
    let mut users = USERS.to_vec();
    users.shuffle(rng);
    (users[0], users[1])
}

async fn transfer(client: &Client, state: &Load, rng: &mut StdRng) -> Result<()> {
    let (from, to) = two_users(rng);
    let amount = rng.random_range(1..=50);
    let posting = |account, amount| ledger_pb::PostingInput { account, asset_code: "DIAMOND".into(), amount };
    let body = ledger_pb::PostTransactionRequest {
        idempotency_key: String::new(),
        business_type: "TRANSFER".into(),
        correlation_id: String::new(),
        memo: "fault suite".into(),
        postings: vec![posting(user(from), -amount), posting(user(to), amount)],
        hold_settlements: Vec::new(),
    };
    let answer = client
        .write("transfer", ADMIN_ROLE, body, |channel, request| async move {
            LedgerServiceClient::new(channel).post_transaction(request).await
        })
        .await?;
    if answer.is_some() {
        let mut expected = state.expected();
        expected.add(from, "DIAMOND", -amount);
        expected.add(to, "DIAMOND", amount);
        expected.transfers += 1;
    }
    Ok(())
}

/// Creates a listing as `seller`; its id when OK.
async fn list(
    client: &Client,
    seller: i64,
    offer: market_pb::create_listing_request::Offer,
    price: i64,
) -> Result<Option<String>> {
    let body = market_pb::CreateListingRequest {
        idempotency_key: String::new(),
        seller_user_id: 0,
        offer: Some(offer),
        price: Some(market_pb::Price { asset_code: "DIAMOND".into(), amount: price }),
        expires_at: None,
    };
    let answer = client
        .write("create listing", (seller, 0), body, |channel, request| async move {
            MarketServiceClient::new(channel).create_listing(request).await
        })
        .await?;
    match answer {
        Some(answer) => Ok(Some(answer.body.listing.context("listing missing")?.id)),
        None => Ok(None),
    }
}

/// Buys `listing` as `buyer`; the trade when OK.
async fn buy(client: &Client, buyer: i64, listing: &str) -> Result<Option<market_pb::Trade>> {
    let body = market_pb::PurchaseListingRequest { idempotency_key: String::new(), listing_id: listing.to_owned() };
    let answer = client
        .write("purchase", (buyer, 0), body, |channel, request| async move {
            MarketServiceClient::new(channel).purchase_listing(request).await
        })
        .await?;
    match answer {
        Some(answer) => {
            let trade = answer.body.trade.context("trade missing")?;
            ensure!(
                trade.status == market_pb::TradeStatus::Completed as i32,
                "purchase of {listing} answered OK with trade {} in status {}",
                trade.id,
                trade.status
            );
            Ok(Some(trade))
        }
        None => Ok(None),
    }
}

/// Books a completed trade's payment.
fn pay(expected: &mut Expected, trade: &market_pb::Trade) -> Result<()> {
    let price = trade.price.as_ref().context("trade without price")?;
    ensure!(price.asset_code == "DIAMOND", "trade {} priced in {}", trade.id, price.asset_code);
    ensure!(trade.fee + trade.seller_net == price.amount, "trade {}: fee + net != price", trade.id);
    expected.add(trade.buyer_user_id, "DIAMOND", -price.amount);
    expected.add(trade.seller_user_id, "DIAMOND", trade.seller_net);
    expected.fees += trade.fee;
    ensure!(expected.trades.insert(trade.id.clone()), "trade {} answered twice", trade.id);
    Ok(())
}

async fn asset_trade(client: &Client, state: &Load, rng: &mut StdRng) -> Result<()> {
    let (seller, buyer) = two_users(rng);
    let amount = rng.random_range(1..=20);
    let price = rng.random_range(10..=200);
    let offer = market_pb::create_listing_request::Offer::Asset(market_pb::AssetOffer {
        asset_code: "red_shard".into(),
        amount,
    });
    let Some(listing) = list(client, seller, offer, price).await? else { return Ok(()) };
    state.expected().listings.insert(listing.clone(), "asset");
    if let Some(trade) = buy(client, buyer, &listing).await? {
        let mut expected = state.expected();
        pay(&mut expected, &trade)?;
        expected.add(seller, "red_shard", -amount);
        expected.add(buyer, "red_shard", amount);
    }
    Ok(())
}

async fn item_trade(client: &Client, state: &Load, rng: &mut StdRng) -> Result<bool> {
    let Some((item, seller)) = state.take_sword() else { return Ok(false) };
    let buyer = loop {
        let buyer = USERS[rng.random_range(0..USERS.len())];
        if buyer != seller {
            break buyer;
        }
    };
    let price = rng.random_range(10..=300);
    let offer = market_pb::create_listing_request::Offer::Item(market_pb::ItemOffer {
        item_instance_id: item.clone(),
        template_code: String::new(),
    });
    let Some(listing) = list(client, seller, offer, price).await? else { return Ok(true) };
    state.expected().listings.insert(listing.clone(), "item");
    if let Some(trade) = buy(client, buyer, &listing).await? {
        let mut expected = state.expected();
        pay(&mut expected, &trade)?;
        expected.swords.insert(item, buyer);
    }
    Ok(true)
}

async fn redemption(client: &Client, state: &Load, _rng: &mut StdRng) -> Result<bool> {
    let Some((item, owner)) = state.take_prize() else { return Ok(false) };
    let body = redemption_pb::CreateOrderRequest { idempotency_key: String::new(), item_instance_id: item.clone() };
    let Some(created) = client
        .write("create order", (owner, 0), body, |channel, request| async move {
            RedemptionServiceClient::new(channel).create_order(request).await
        })
        .await?
    else {
        return Ok(true);
    };
    let order = created.body.order.context("order missing")?;
    ensure!(order.item_instance_id == item, "order {} is for {}, not {item}", order.id, order.item_instance_id);
    state.expected().orders.insert(order.id.clone(), item.clone());
    let mut code = created.body.code;
    // A replayed creation has its code redacted: the owner asks for a fresh one.
    let mut reissues = 0;
    while code.is_empty() {
        ensure!(created.redacted || reissues > 0, "order {}: an unredacted creation without a code", order.id);
        ensure!(reissues < 5, "order {}: no code after {reissues} reissues", order.id);
        reissues += 1;
        let body = redemption_pb::ReissueCodeRequest { idempotency_key: String::new(), order_id: order.id.clone() };
        let Some(reissued) = client
            .write("reissue code", (owner, 0), body, |channel, request| async move {
                RedemptionServiceClient::new(channel).reissue_code(request).await
            })
            .await?
        else {
            return Ok(true);
        };
        code = reissued.body.code;
    }
    let body = redemption_pb::FulfillOrderRequest { idempotency_key: String::new(), code };
    let fulfilled = client
        .write("fulfil order", (STAFF, 50), body, |channel, request| async move {
            RedemptionServiceClient::new(channel).fulfill_order(request).await
        })
        .await?;
    if let Some(fulfilled) = fulfilled {
        let order_after = fulfilled.body.order.context("order missing")?;
        ensure!(order_after.id == order.id, "fulfilled {} instead of {}", order_after.id, order.id);
        state.expected().used.insert(item);
    }
    Ok(true)
}

/// Buys 1 or 2 units of `offer` as a random player; books the exchange when OK.
async fn offer_purchase(client: &Client, state: &Load, rng: &mut StdRng, offer: &OfferSpec) -> Result<()> {
    let buyer = USERS[rng.random_range(0..USERS.len())];
    let quantity = rng.random_range(1..=2);
    let body = market_pb::PurchaseOfferRequest { idempotency_key: String::new(), offer_id: offer.id.into(), quantity };
    let answer = client
        .write(offer.what, (buyer, 0), body, |channel, request| async move {
            MarketServiceClient::new(channel).purchase_offer(request).await
        })
        .await?;
    let Some(answer) = answer else { return Ok(()) };
    let exchange = answer.body.exchange.context("exchange missing")?;
    let price: Vec<market_pb::AssetAmount> =
        offer.price.iter().map(|(asset, price)| amount(asset, price * quantity)).collect();
    ensure!(
        exchange.kind == market_pb::ExchangeKind::OfferPurchase as i32
            && exchange.user_id == buyer
            && exchange.offer_id == offer.id
            && exchange.quantity == quantity,
        "purchase of {quantity} {} by {buyer} answered with {exchange:?}",
        offer.id
    );
    ensure!(same_amounts(&exchange.paid, &price), "exchange {} paid {:?}, not {price:?}", exchange.id, exchange.paid);
    let expected = expect_completed(&exchange, offer.gems * quantity, offer.chests * quantity)?;
    state.expected().exchange(&exchange, ExpectedExchange { offer: offer.id.into(), quantity, ..expected })
}

/// Grants a random player a bundle of gems and chests with a draw's correlation id, as
/// the admin; books the exchange when OK.
async fn bundle(client: &Client, state: &Load, rng: &mut StdRng) -> Result<()> {
    let receiver = USERS[rng.random_range(0..USERS.len())];
    let (gems, chests) = (rng.random_range(1..=100), rng.random_range(1..=2));
    let correlation_id = format!("draw-{}", uuid::Uuid::now_v7());
    let body = market_pb::GrantBundleRequest {
        idempotency_key: String::new(),
        user_id: receiver,
        reward: Some(reward(gems, chests)),
        business_type: BUNDLE_TYPE.into(),
        correlation_id: correlation_id.clone(),
    };
    let answer = client
        .write(BUNDLE_WHAT, ADMIN_ROLE, body, |channel, request| async move {
            MarketServiceClient::new(channel).grant_bundle(request).await
        })
        .await?;
    let Some(answer) = answer else { return Ok(()) };
    let exchange = answer.body.exchange.context("exchange missing")?;
    ensure!(
        exchange.kind == market_pb::ExchangeKind::Bundle as i32
            && exchange.user_id == receiver
            && exchange.paid.is_empty()
            && exchange.business_type == BUNDLE_TYPE
            && exchange.correlation_id == correlation_id,
        "bundle for {receiver} ({correlation_id}) answered with {exchange:?}"
    );
    let expected = expect_completed(&exchange, gems, chests)?;
    state.expected().exchange(&exchange, expected)
}

/// The exchange of an OK answer is completed with `gems` and `chests` granted; what it
/// implies (offer and quantity of a bundle).
fn expect_completed(exchange: &market_pb::Exchange, gems: i64, chests: i64) -> Result<ExpectedExchange> {
    ensure!(
        exchange.status == market_pb::ExchangeStatus::Completed as i32,
        "exchange {} answered OK in status {}",
        exchange.id,
        exchange.status
    );
    ensure!(
        same_amounts(&exchange.granted_assets, &[amount(GEM, gems)]),
        "exchange {} granted {:?}, not {gems} {GEM}",
        exchange.id,
        exchange.granted_assets
    );
    let chests = usize::try_from(chests)?;
    ensure!(
        exchange.granted_items.len() == chests && exchange.granted_items.iter().all(|item| item.template_code == CHEST),
        "exchange {} granted {:?}, not {chests} {CHEST}",
        exchange.id,
        exchange.granted_items
    );
    Ok(ExpectedExchange {
        user: exchange.user_id,
        offer: String::new(),
        quantity: 1,
        chests,
        correlation_id: exchange.correlation_id.clone(),
    })
}

/// The same asset amounts in any order.
fn same_amounts(found: &[market_pb::AssetAmount], expected: &[market_pb::AssetAmount]) -> bool {
    let sorted = |amounts: &[market_pb::AssetAmount]| {
        amounts.iter().map(|amount| (amount.asset_code.clone(), amount.amount)).collect::<BTreeSet<_>>()
    };
    found.len() == expected.len() && sorted(found) == sorted(expected)
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

async fn check(client: &Client, state: &Load, faults: &Faults) -> Result<()> {
    let log = client.log.lock().map(|log| log.clone()).unwrap_or_default();
    let failed: Vec<String> = log
        .iter()
        .filter(|entry| entry.answer.as_ref().is_some_and(|(code, _, _)| *code != Code::Ok))
        .filter(|entry| !is_sold_out(entry))
        .map(|entry| {
            format!("{} key {}: {}", entry.what, entry.key, entry.answer.as_ref().map_or("", |a| a.1.as_str()))
        })
        .collect();
    ensure!(
        failed.is_empty(),
        "writes with a final error (none is expected but OFFER_SOLD_OUT of the limited offer):\n{}",
        failed.join("\n")
    );
    // Every lost answer was obtained by a retry with its key.
    let unanswered: Vec<&WriteLog> = log.iter().filter(|entry| entry.answer.is_none()).collect();
    ensure!(unanswered.is_empty(), "writes never answered: {unanswered:?}");
    check_answer_times(&log, faults)?;

    let recovery = Instant::now();
    while let Some(unsettled) = settled(client, state).await? {
        ensure!(recovery.elapsed() < RECOVERY_LIMIT, "not settled after {RECOVERY_LIMIT:?}:\n{unsettled}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("recovery: everything settled {:.1} s after the load", recovery.elapsed().as_secs_f64());
    check_trades_and_orders(client, state).await?;
    check_exchanges(client, state).await?;
    check_consistency(client).await?;
    check_balances(client, state).await?;
    Ok(())
}

/// A purchase of the limited offer answered OFFER_SOLD_OUT: the one final error expected.
fn is_sold_out(entry: &WriteLog) -> bool {
    let reason = entry.answer.as_ref().and_then(|(_, what, _)| what.split_whitespace().nth(1));
    entry.what == OFFERS[1].what && reason == Some("OFFER_SOLD_OUT")
}

/// The fault that leaves behind the claim an ABORTED answer waits for: a dead gateway's
/// idempotency record (REQUEST_PROCESSING), or a dead market's claim on an exchange
/// (EXCHANGE_IN_PROGRESS, held until the market's request timeout + 1 s).
fn claim_holder(answer: &str) -> &'static str {
    if answer.contains("EXCHANGE_IN_PROGRESS") { "kill market" } else { "kill gateway" }
}

/// No key answered later than the lease + 5 s after the later of its first attempt and
/// the last fault before that answer; and none answered REQUEST_PROCESSING later than that
/// after the later of its first attempt and the last kill of the gateway — only a dead
/// gateway leaves a claim behind, and a retry takes it over once its lease ends, whatever
/// else fails meanwhile (a forward is bounded by the upstream timeout, within the lease) —
/// nor EXCHANGE_IN_PROGRESS later than that after the last kill of the market.
fn check_answer_times(log: &[WriteLog], faults: &Faults) -> Result<()> {
    let mut late = Vec::new();
    for entry in log {
        let processing = entry.lost.iter().filter(|(code, _, _)| *code == Code::Aborted);
        let answers = processing
            .map(|(_, what, at)| (what.as_str(), *at, Some(claim_holder(what))))
            .chain(entry.answer.as_ref().map(|(_, what, at)| (what.as_str(), *at, None)));
        for (what, at, cause) in answers {
            let since = faults.last_before(at, cause).map_or(entry.first_sent, |fault| fault.max(entry.first_sent));
            let waited = at.saturating_duration_since(since);
            if waited > ANSWER_BOUND {
                let after = cause.unwrap_or("the last fault");
                late.push(format!("{} key {}: {what:?} {waited:?} after {after}", entry.what, entry.key));
            }
        }
    }
    ensure!(late.is_empty(), "answers later than lease {LEASE:?} + 5 s:\n{}", late.join("\n"));
    Ok(())
}

/// `None` when every listing, trade, order and item reached its final state; otherwise
/// what has not.
async fn settled(client: &Client, state: &Load) -> Result<Option<String>> {
    let (listings, swords, used) = {
        let expected = state.expected();
        (expected.listings.clone(), expected.swords.clone(), expected.used.clone())
    };
    let mut unsettled = Vec::new();
    for listing in listings.keys() {
        let body = market_pb::GetListingRequest { listing_id: listing.clone() };
        let found = client
            .read(body, |channel, request| async move { MarketServiceClient::new(channel).get_listing(request).await })
            .await?
            .listing
            .context("listing missing")?;
        let status = market_pb::ListingStatus::try_from(found.status).unwrap_or_default();
        if matches!(status, market_pb::ListingStatus::Creating | market_pb::ListingStatus::Selling) {
            unsettled.push(format!("listing {listing} {status:?}"));
        }
    }
    for trade in trades(client).await?.values() {
        let status = market_pb::TradeStatus::try_from(trade.status).unwrap_or_default();
        if !matches!(
            status,
            market_pb::TradeStatus::Completed | market_pb::TradeStatus::Failed | market_pb::TradeStatus::Refunded
        ) {
            unsettled.push(format!("trade {} {status:?}", trade.id));
        }
    }
    for order in all_orders(client).await?.values() {
        let status = redemption_pb::OrderStatus::try_from(order.status).unwrap_or_default();
        if matches!(status, redemption_pb::OrderStatus::Locking | redemption_pb::OrderStatus::Pending) {
            unsettled.push(format!("order {} {status:?}", order.id));
        }
    }
    for exchange in exchanges(client).await?.values().filter(|exchange| !is_final(exchange)) {
        let status = market_pb::ExchangeStatus::try_from(exchange.status).unwrap_or_default();
        unsettled.push(format!("exchange {} {status:?}", exchange.id));
    }
    for (item, status) in items(client, swords.keys().chain(used.iter())).await? {
        let want = if used.contains(&item) { items_pb::ItemStatus::Used } else { items_pb::ItemStatus::Available };
        if status != want {
            unsettled.push(format!("item {item} {status:?}, expected {want:?}"));
        }
    }
    Ok((!unsettled.is_empty()).then(|| unsettled.join("\n")))
}

/// Every trade of every user, by id.
async fn trades(client: &Client) -> Result<BTreeMap<String, market_pb::Trade>> {
    let mut all = BTreeMap::new();
    for user_id in USERS {
        let mut page_token = String::new();
        loop {
            let body = market_pb::ListTradesRequest { user_id, page_size: 500, page_token: page_token.clone() };
            let page = client
                .read(
                    body,
                    |channel, request| async move { MarketServiceClient::new(channel).list_trades(request).await },
                )
                .await?;
            all.extend(page.trades.into_iter().map(|trade| (trade.id.clone(), trade)));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    Ok(all)
}

/// Every exchange of every user, by id; an exchange listed twice is an error.
async fn exchanges(client: &Client) -> Result<BTreeMap<String, market_pb::Exchange>> {
    let mut all = BTreeMap::new();
    for user_id in USERS {
        let mut page_token = String::new();
        loop {
            let body = market_pb::ListExchangesRequest { user_id, page_size: 500, page_token: page_token.clone() };
            let page = client
                .read(body, |channel, request| async move {
                    MarketServiceClient::new(channel).list_exchanges(request).await
                })
                .await?;
            for exchange in page.exchanges {
                ensure!(
                    exchange.user_id == user_id,
                    "exchange {} of {} listed for {user_id}",
                    exchange.id,
                    exchange.user_id
                );
                let id = exchange.id.clone();
                ensure!(all.insert(id.clone(), exchange).is_none(), "exchange {id} listed twice");
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    Ok(all)
}

fn is_final(exchange: &market_pb::Exchange) -> bool {
    [market_pb::ExchangeStatus::Completed, market_pb::ExchangeStatus::Failed]
        .iter()
        .any(|status| exchange.status == *status as i32)
}

/// Every order of every user, by id.
async fn all_orders(client: &Client) -> Result<BTreeMap<String, redemption_pb::Order>> {
    let mut all = BTreeMap::new();
    for owner_user_id in USERS {
        let mut page_token = String::new();
        loop {
            let body = redemption_pb::ListOrdersRequest {
                owner_user_id,
                page_size: 500,
                page_token: page_token.clone(),
                ..Default::default()
            };
            let page = client
                .read(body, |channel, request| async move {
                    RedemptionServiceClient::new(channel).list_orders(request).await
                })
                .await?;
            all.extend(page.orders.into_iter().map(|order| (order.id.clone(), order)));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    Ok(all)
}

/// The status of each item.
async fn items(client: &Client, ids: impl Iterator<Item = &String>) -> Result<Vec<(String, items_pb::ItemStatus)>> {
    let mut statuses = Vec::new();
    for id in ids {
        let item = item(client, id).await?;
        statuses.push((id.clone(), items_pb::ItemStatus::try_from(item.status).unwrap_or_default()));
    }
    Ok(statuses)
}

async fn item(client: &Client, id: &str) -> Result<items_pb::ItemInstance> {
    let body = items_pb::GetItemRequest { item_instance_id: id.to_owned() };
    client
        .read(body, |channel, request| async move { ItemServiceClient::new(channel).get_item(request).await })
        .await?
        .item
        .context("item missing")
}

/// Exactly once on the market and in redemption: the completed trades are exactly those
/// answered OK, every listing sold, every order fulfilled once, every item where its
/// answers put it.
async fn check_trades_and_orders(client: &Client, state: &Load) -> Result<()> {
    let (listings, expected_trades, orders, swords, used) = {
        let expected = state.expected();
        (
            expected.listings.clone(),
            expected.trades.clone(),
            expected.orders.clone(),
            expected.swords.clone(),
            expected.used.clone(),
        )
    };
    let trades = trades(client).await?;
    let completed: BTreeSet<String> = trades
        .values()
        .filter(|trade| trade.status == market_pb::TradeStatus::Completed as i32)
        .map(|trade| trade.id.clone())
        .collect();
    ensure!(
        completed == expected_trades,
        "completed trades differ from the OK purchases: extra {:?}, missing {:?}",
        completed.difference(&expected_trades).collect::<Vec<_>>(),
        expected_trades.difference(&completed).collect::<Vec<_>>()
    );
    let mut sold_listings = BTreeSet::new();
    for trade in trades.values().filter(|trade| completed.contains(&trade.id)) {
        ensure!(sold_listings.insert(trade.listing_id.clone()), "listing {} sold twice", trade.listing_id);
    }
    for listing in listings.keys() {
        let body = market_pb::GetListingRequest { listing_id: listing.clone() };
        let found = client
            .read(body, |channel, request| async move { MarketServiceClient::new(channel).get_listing(request).await })
            .await?
            .listing
            .context("listing missing")?;
        ensure!(
            found.status == market_pb::ListingStatus::Sold as i32 && sold_listings.contains(listing),
            "listing {listing} is {:?}, not sold by one of the OK purchases",
            market_pb::ListingStatus::try_from(found.status)
        );
    }
    let found_orders = all_orders(client).await?;
    let found_ids: BTreeSet<&String> = found_orders.keys().collect();
    let expected_ids: BTreeSet<&String> = orders.keys().collect();
    ensure!(
        found_ids == expected_ids,
        "orders differ from the OK creations: found {found_ids:?}, expected {expected_ids:?}"
    );
    for (id, order) in &found_orders {
        ensure!(
            order.status == redemption_pb::OrderStatus::Fulfilled as i32 && used.contains(&order.item_instance_id),
            "order {id} is {:?}",
            redemption_pb::OrderStatus::try_from(order.status)
        );
    }
    for (id, owner) in &swords {
        let item = item(client, id).await?;
        ensure!(item.owner_user_id == *owner, "sword {id} is owned by {}, not {owner}", item.owner_user_id);
        ensure!(item.status == items_pb::ItemStatus::Available as i32, "sword {id} is {:?}", item.status);
    }
    for id in &used {
        let item = item(client, id).await?;
        ensure!(item.status == items_pb::ItemStatus::Used as i32, "prize {id} is {:?}", item.status);
    }
    Ok(())
}

/// Exactly once on the shop: the completed exchanges are exactly those answered OK, each
/// listed once for its user; none unfinished, none stuck; their chests owned by their
/// users with the exchange's correlation id on the grant, their closing ledger entries
/// with it too; no offer sold past its stock.
async fn check_exchanges(client: &Client, state: &Load) -> Result<()> {
    let expected = state.expected().exchanges.clone();
    let found = exchanges(client).await?;
    let unfinished: Vec<&String> = found.values().filter(|exchange| !is_final(exchange)).map(|e| &e.id).collect();
    ensure!(unfinished.is_empty(), "exchanges unfinished after recovery: {unfinished:?}");
    let stuck = client
        .read(market_pb::ListStuckExchangesRequest { older_than_seconds: 1 }, |channel, request| async move {
            MarketServiceClient::new(channel).list_stuck_exchanges(request).await
        })
        .await?;
    let stuck: Vec<&String> = stuck.exchanges.iter().map(|exchange| &exchange.id).collect();
    ensure!(stuck.is_empty(), "stuck exchanges after recovery: {stuck:?}");
    let completed: BTreeSet<&String> = found
        .values()
        .filter(|exchange| exchange.status == market_pb::ExchangeStatus::Completed as i32)
        .map(|exchange| &exchange.id)
        .collect();
    let answered: BTreeSet<&String> = expected.keys().collect();
    ensure!(
        completed == answered,
        "completed exchanges differ from the OK answers: extra {:?}, missing {:?}",
        completed.difference(&answered).collect::<Vec<_>>(),
        answered.difference(&completed).collect::<Vec<_>>()
    );
    for (id, want) in &expected {
        let exchange = found.get(id).context("exchange missing")?;
        ensure!(
            exchange.user_id == want.user
                && exchange.offer_id == want.offer
                && exchange.quantity == want.quantity
                && exchange.correlation_id == want.correlation_id
                && exchange.granted_items.len() == want.chests,
            "exchange {id} is {exchange:?}, answered as {want:?}"
        );
        for granted in &exchange.granted_items {
            check_granted_item(client, exchange, &granted.item_instance_id).await?;
        }
        check_closing_entry(client, exchange).await?;
    }
    for offer in &OFFERS {
        check_stock(client, offer, &expected).await?;
    }
    Ok(())
}

/// A chest of `exchange`: owned by its user, available, granted with its correlation id.
async fn check_granted_item(client: &Client, exchange: &market_pb::Exchange, id: &str) -> Result<()> {
    let found = item(client, id).await?;
    ensure!(
        found.owner_user_id == exchange.user_id
            && found.template_code == CHEST
            && found.status == items_pb::ItemStatus::Available as i32,
        "item {id} of exchange {} is {found:?}",
        exchange.id
    );
    let body = items_pb::ListItemEventsRequest { item_instance_id: id.to_owned(), page_size: 1, ..Default::default() };
    let events = client
        .read(body, |channel, request| async move { ItemServiceClient::new(channel).list_item_events(request).await })
        .await?;
    let grant = events.events.first().with_context(|| format!("item {id} has no event"))?;
    ensure!(
        grant.r#type == items_pb::ItemEventType::Granted as i32
            && grant.correlation_id == exchange.correlation_id
            && grant.to_owner_user_id == exchange.user_id,
        "item {id}'s first event is {grant:?}, not the grant of exchange {} (correlation id {})",
        exchange.id,
        exchange.correlation_id
    );
    Ok(())
}

/// The last ledger entry of `exchange` closes it: recorded with its business type and
/// correlation id.
async fn check_closing_entry(client: &Client, exchange: &market_pb::Exchange) -> Result<()> {
    let id =
        exchange.ledger_transaction_ids.last().with_context(|| format!("exchange {} without entry", exchange.id))?;
    let body = ledger_pb::GetTransactionRequest { id: id.clone() };
    let entry = client
        .read(body, |channel, request| async move { LedgerServiceClient::new(channel).get_transaction(request).await })
        .await?
        .transaction
        .context("transaction missing")?;
    ensure!(
        entry.business_type == exchange.business_type && entry.correlation_id == exchange.correlation_id,
        "exchange {} ({}, correlation id {}) closed by entry {id} of {} with correlation id {}",
        exchange.id,
        exchange.business_type,
        exchange.correlation_id,
        entry.business_type,
        entry.correlation_id
    );
    Ok(())
}

/// The offer's sold units are those of its completed exchanges, never past its stock.
async fn check_stock(client: &Client, offer: &OfferSpec, expected: &BTreeMap<String, ExpectedExchange>) -> Result<()> {
    let body = market_pb::GetOfferRequest { offer_id: offer.id.into() };
    let found = client
        .read(body, |channel, request| async move { MarketServiceClient::new(channel).get_offer(request).await })
        .await?
        .offer
        .context("offer missing")?;
    let completed: i64 = expected.values().filter(|want| want.offer == offer.id).map(|want| want.quantity).sum();
    ensure!(found.sold == completed, "offer {} sold {}, its completed exchanges {completed}", offer.id, found.sold);
    if let Some(stock) = offer.stock {
        ensure!(completed <= stock, "offer {} completed {completed} units of a stock of {stock}", offer.id);
    }
    Ok(())
}

/// The ledger reconciles and the services agree (polled: recovery may still run).
async fn check_consistency(client: &Client) -> Result<()> {
    let started = Instant::now();
    loop {
        let reconcile = client
            .read(ledger_pb::ReconcileRequest::default(), |channel, request| async move {
                LedgerServiceClient::new(channel).reconcile(request).await
            })
            .await?;
        let body = gateway_pb::CheckConsistencyRequest { grace_seconds: 1 };
        let consistency = client
            .read(body, |channel, request| async move {
                OperationsServiceClient::new(channel).check_consistency(request).await
            })
            .await?;
        if reconcile.findings.is_empty() && consistency.findings.is_empty() {
            println!(
                "consistency: ledger reconciles ({} balances), services agree ({} checked)",
                reconcile.balances_checked, consistency.checked
            );
            return Ok(());
        }
        ensure!(
            started.elapsed() < RECOVERY_LIMIT,
            "findings after {RECOVERY_LIMIT:?}: ledger {:?}; gateway {:?}",
            reconcile.findings,
            consistency.findings
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Balances equal what the OK answers imply (every write applied exactly once), nothing
/// is frozen, and every asset sums to zero over users and system accounts.
async fn check_balances(client: &Client, state: &Load) -> Result<()> {
    let (issued, expected_balances, fees, revenues) = {
        let expected = state.expected();
        (expected.issued.clone(), expected.balances.clone(), expected.fees, expected.revenue.clone())
    };
    let mut found = BTreeMap::new();
    let mut user_sum: BTreeMap<String, i64> = BTreeMap::new();
    for user_id in USERS {
        let body = ledger_pb::ListBalancesRequest { account: user(user_id), as_of: None };
        let balances = client
            .read(
                body,
                |channel, request| async move { LedgerServiceClient::new(channel).list_balances(request).await },
            )
            .await?;
        for balance in balances.balances {
            ensure!(balance.frozen == 0, "user {user_id} still has {} {} frozen", balance.frozen, balance.asset_code);
            *user_sum.entry(balance.asset_code.clone()).or_insert(0) += balance.total;
            found.insert((user_id, balance.asset_code), balance.total);
        }
    }
    let expected_nonzero: BTreeMap<(i64, String), i64> =
        expected_balances.into_iter().filter(|(_, amount)| *amount != 0).collect();
    ensure!(
        found == expected_nonzero,
        "balances differ from the OK answers:\nfound    {found:?}\nexpected {expected_nonzero:?}"
    );
    for (asset, issued) in &issued {
        let balance = |account: &str| {
            let body =
                ledger_pb::GetBalanceRequest { account: system(account), asset_code: asset.clone(), as_of: None };
            client.read(
                body,
                |channel, request| async move { LedgerServiceClient::new(channel).get_balance(request).await },
            )
        };
        let issuance = balance("SYSTEM_ISSUANCE").await?.balance.context("balance missing")?.total;
        let fee = balance("SYSTEM_PLATFORM_FEE").await?.balance.context("balance missing")?.total;
        let revenue = balance(REVENUE_ACCOUNT).await?.balance.context("balance missing")?.total;
        let expected_fee = if asset == "DIAMOND" { fees } else { 0 };
        let expected_revenue = revenues.get(asset).copied().unwrap_or(0);
        ensure!(issuance == -issued, "{asset}: SYSTEM_ISSUANCE is {issuance}, {issued} were issued");
        ensure!(fee == expected_fee, "{asset}: SYSTEM_PLATFORM_FEE is {fee}, the trades' fees sum to {expected_fee}");
        ensure!(
            revenue == expected_revenue,
            "{asset}: {REVENUE_ACCOUNT} is {revenue}, the OK purchases paid {expected_revenue}"
        );
        let users = user_sum.get(asset).copied().unwrap_or(0);
        ensure!(
            users + fee + revenue == *issued,
            "{asset}: users hold {users} + fees {fee} + revenue {revenue}, {issued} were issued"
        );
    }
    Ok(())
}

/// What happened, for the report.
fn summary(state: &Load, faults: &Faults, log: &[WriteLog]) -> String {
    let expected = state.expected();
    let bundles = expected.exchanges.values().filter(|exchange| exchange.offer.is_empty()).count();
    let mut text = format!(
        "writes: {} transfers, {} listings, {} trades, {} orders, {} fulfilled, {} offer purchases \
         ({} sold out), {bundles} bundles",
        expected.transfers,
        expected.listings.len(),
        expected.trades.len(),
        expected.orders.len(),
        expected.used.len(),
        expected.exchanges.len() - bundles,
        log.iter().filter(|entry| is_sold_out(entry)).count()
    );
    drop(expected);
    let Some(start) = faults.all().first().map(|(at, _)| *at) else { return text };
    let _ = write!(
        text,
        "\nfaults: {}",
        faults
            .all()
            .iter()
            .map(|(at, what)| format!("{what} @{:.1}s", at.duration_since(start).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    text
}

/// Counts of lost answers by kind, and of replays.
fn lost_summary(log: &[WriteLog]) -> String {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for entry in log {
        for (code, what, _) in &entry.lost {
            let reason = what.split_whitespace().nth(1).unwrap_or_default();
            *by_kind.entry(format!("{code:?} {reason}")).or_insert(0) += 1;
        }
    }
    let with_lost = log.iter().filter(|entry| !entry.lost.is_empty()).count();
    let exchanges_lost = log
        .iter()
        .filter(|entry| entry.what == BUNDLE_WHAT || OFFERS.iter().any(|offer| offer.what == entry.what))
        .filter(|entry| !entry.lost.is_empty())
        .count();
    let replays = log.iter().filter(|entry| entry.gateway_replay).count();
    format!(
        "{} writes, {with_lost} lost an answer ({exchanges_lost} offer purchases and bundles), {replays} final \
         answers were gateway replays; lost: {by_kind:?}",
        log.len()
    )
}
