//! PostgreSQL failover under load against the real `economy` binary (deploy/FAILOVER.md):
//! the test runs its own primary and a streaming standby that confirms every commit
//! (`synchronous_commit = on`, the standby named in `synchronous_standby_names`), and a
//! stack whose five databases live on the primary, reached through a TCP forwarder that
//! stands for the HAProxy or virtual IP of a production setup. While clients write through
//! the gateway (transfers, credits and shop purchases, an exchange saga across the market,
//! the ledger and items), the primary's postmaster is killed, the standby promoted and the
//! forwarder re-pointed at it. The services are not restarted: meanwhile they answer only
//! errors the catalogue says to retry (docs/errors.md), then serve again; every write a
//! client saw acknowledged is there, writes whose answer was lost resolve by retry with
//! their keys and exactly once, and Reconcile and the consistency check are clean.
//!
//! It needs PostgreSQL's server binaries (`/usr/lib/postgresql/<version>/bin`, Debian's
//! packages): without them it fails when `ECONOMY_TEST_POSTGRES_URL` is set (CI installs
//! them) and is skipped with a notice otherwise. As root it runs them as `postgres`.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use economy_e2e::{Run, Stack};
use economy_kit::reasons::{Action, CATALOGUE};
use economy_kit::testing::POSTGRES_URL_ENV;
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinSet;

const SERVICES: [&str; 5] = ["gateway", "ledger", "items", "redemption", "market"];
const USERS: [i64; 6] = [2, 3, 4, 5, 6, 7];
const GRANT: i64 = 1_000_000;
/// The pack's price in POINTS and its reward in red_shard.
const PACK_PRICE: i64 = 10;
const PACK_SHARDS: i64 = 5;
/// The standby's name (`cluster_name`, its walreceiver's `application_name`).
const STANDBY_NAME: &str = "standby1";
/// Acknowledged writes before the failover, and again after it, before the load stops.
const WRITES_PER_PHASE: usize = 20;
/// How long one write may stay unanswered while its client retries it.
const ANSWER_DEADLINE: Duration = Duration::from_secs(90);
/// How long any other wait of the test may take (a server starting, a standby catching up).
const WAIT_DEADLINE: Duration = Duration::from_secs(60);
/// The stack's upstream deadline, and job intervals short enough for a test.
const STACK_ENV: [(&str, &str); 6] = [
    ("ECONOMY_SERVER__REQUEST_TIMEOUT_SECS", "5"),
    ("ECONOMY_GATEWAY__IDEMPOTENCY__LEASE_MARGIN_SECS", "2"),
    ("ECONOMY_GATEWAY__IDEMPOTENCY__TIMEOUT_JOB_INTERVAL_SECS", "1"),
    ("ECONOMY_MARKET__RECOVERY_INTERVAL_SECS", "1"),
    ("ECONOMY_MARKET__STALE_AFTER_SECS", "6"),
    ("ECONOMY_REDEMPTION__OUTBOX_INTERVAL_SECS", "1"),
];

/// The newest installed PostgreSQL's bin directory with every tool the test runs.
fn postgres_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| ["initdb", "pg_ctl", "pg_basebackup", "psql"].iter().all(|tool| bin.join(tool).is_file()))
        .collect();
    dirs.sort_by_key(|bin| {
        let version = bin.parent().and_then(Path::file_name).map(|name| name.to_string_lossy().into_owned());
        version.and_then(|version| version.parse::<u32>().ok()).unwrap_or(0)
    });
    dirs.pop()
}

/// PostgreSQL's tools, run as `postgres` when the test runs as root (they refuse root).
struct Tools {
    bin: PathBuf,
    as_root: bool,
}

impl Tools {
    async fn new(bin: PathBuf) -> anyhow::Result<Self> {
        let id = Command::new("id").arg("-u").output().await.context("cannot run `id -u`")?;
        Ok(Self { bin, as_root: String::from_utf8_lossy(&id.stdout).trim() == "0" })
    }

    /// Runs `tool args…` and returns its stdout, failing with its output unless it exits 0.
    async fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let program = self.bin.join(tool);
        let mut command = if self.as_root {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(&program);
            command
        } else {
            Command::new(&program)
        };
        command.args(args).current_dir("/").kill_on_drop(true);
        let output = tokio::time::timeout(WAIT_DEADLINE, command.output())
            .await
            .with_context(|| format!("`{tool} {}` timed out", args.join(" ")))??;
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        anyhow::ensure!(
            output.status.success(),
            "`{tool} {}` failed: {}{}",
            args.join(" "),
            text(&output.stdout),
            text(&output.stderr)
        );
        Ok(text(&output.stdout))
    }

    /// `psql -Atc sql` on the server at `port`: the answer, trimmed.
    async fn query(&self, port: u16, sql: &str) -> anyhow::Result<String> {
        let port = port.to_string();
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-d", "postgres", "-Atc", sql];
        Ok(self.run("psql", &args).await?.trim().to_owned())
    }
}

/// One PostgreSQL cluster of the test: its data directory and port.
struct Cluster {
    data: PathBuf,
    port: u16,
}

impl Cluster {
    fn path(&self) -> &str {
        self.data.to_str().unwrap_or_default()
    }

    /// Appends settings to its `postgresql.conf` (later lines win).
    fn configure(&self, settings: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().append(true).open(self.data.join("postgresql.conf"))?;
        Ok(file.write_all(settings.as_bytes())?)
    }

    async fn start(&self, tools: &Tools) -> anyhow::Result<()> {
        let log = self.data.with_extension("log");
        tools.run("pg_ctl", &["-D", self.path(), "-l", log.to_str().unwrap_or_default(), "-w", "start"]).await?;
        Ok(())
    }

    /// The postmaster's process id, from `postmaster.pid`.
    fn postmaster(&self) -> anyhow::Result<String> {
        let pid_file = std::fs::read_to_string(self.data.join("postmaster.pid"))?;
        pid_file.lines().next().map(str::to_owned).context("postmaster.pid is empty")
    }
}

/// A primary and its synchronous standby in a temporary directory, both stopped
/// (immediately) and removed on drop.
struct Pair {
    root: PathBuf,
    tools: Tools,
    primary: Cluster,
    standby: Cluster,
}

impl Pair {
    async fn start(tools: Tools) -> anyhow::Result<Self> {
        let root = std::env::temp_dir().join(format!("economy-e2e-failover-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&root)?;
        // The clusters' owner (`postgres` under root) creates its directories here.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777))?;
        let primary = Cluster { data: root.join("primary"), port: free_port()? };
        let standby = Cluster { data: root.join("standby"), port: free_port()? };
        let pair = Self { root, tools, primary, standby };
        pair.start_primary().await?;
        pair.start_standby().await?;
        pair.wait_until_synchronous().await?;
        Ok(pair)
    }

    async fn start_primary(&self) -> anyhow::Result<()> {
        let primary = &self.primary;
        self.tools.run("initdb", &["-D", primary.path(), "-U", "postgres", "--auth=trust", "-E", "UTF8"]).await?;
        primary.configure(&format!(
            "\nport = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nwal_level = replica\n\
             max_wal_senders = 4\nmax_connections = 200\nsynchronous_commit = on\n\
             synchronous_standby_names = '{STANDBY_NAME}'\n",
            primary.port,
            self.root.display()
        ))?;
        primary.start(&self.tools).await
    }

    /// A base backup of the primary with its streaming configuration (`-R`), named so the
    /// primary waits for it, and without the primary's synchronous standby: once promoted
    /// it has none, and would otherwise wait for one on every commit.
    async fn start_standby(&self) -> anyhow::Result<()> {
        let (standby, port) = (&self.standby, self.primary.port.to_string());
        let args = ["-h", "127.0.0.1", "-p", &port, "-U", "postgres", "-D", standby.path(), "-R", "-X", "stream"];
        self.tools.run("pg_basebackup", &args).await?;
        standby.configure(&format!(
            "\nport = {}\ncluster_name = '{STANDBY_NAME}'\nsynchronous_standby_names = ''\n",
            standby.port
        ))?;
        standby.start(&self.tools).await
    }

    async fn wait_until_synchronous(&self) -> anyhow::Result<()> {
        let sql = format!("SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'");
        let deadline = Instant::now() + WAIT_DEADLINE;
        while self.tools.query(self.primary.port, &sql).await? != "sync" {
            anyhow::ensure!(Instant::now() < deadline, "the standby did not become synchronous");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Kills the primary's postmaster (SIGKILL: no shutdown, no last WAL sent) and
    /// promotes the standby, waiting until it accepts writes.
    async fn fail_over(&self) -> anyhow::Result<()> {
        let pid = self.primary.postmaster()?;
        let killed = Command::new("kill").args(["-KILL", &pid]).status().await?;
        anyhow::ensure!(killed.success(), "cannot kill the primary's postmaster {pid}");
        self.tools.run("pg_ctl", &["-D", self.standby.path(), "-w", "promote"]).await?;
        let promoted = self.tools.query(self.standby.port, "SELECT pg_is_in_recovery()").await?;
        anyhow::ensure!(promoted == "f", "the promoted standby is still in recovery");
        Ok(())
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for cluster in [&self.primary, &self.standby] {
            let pg_ctl = self.tools.bin.join("pg_ctl");
            let mut command = if self.tools.as_root {
                let mut command = std::process::Command::new("runuser");
                command.args(["-u", "postgres", "--"]).arg(pg_ctl);
                command
            } else {
                std::process::Command::new(pg_ctl)
            };
            let _ = command.args(["-D", cluster.path(), "-m", "immediate", "stop"]).current_dir("/").output();
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A TCP forwarder on 127.0.0.1 to the server at a port that can move: what HAProxy or a
/// virtual IP is in production. Re-pointing it cuts the sessions to the old server, as
/// HAProxy's `on-marked-down shutdown-sessions` does.
struct Forwarder {
    port: u16,
    target: watch::Sender<u16>,
}

impl Forwarder {
    async fn start(target: u16) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (sender, receiver) = watch::channel(target);
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(forward(inbound, receiver.clone()));
            }
        });
        Ok(Self { port, target: sender })
    }

    fn point_at(&self, port: u16) {
        self.target.send_replace(port);
    }
}

/// Copies both ways between `inbound` and the current target until either side closes or
/// the target moves.
async fn forward(mut inbound: TcpStream, mut target: watch::Receiver<u16>) {
    let port = *target.borrow_and_update();
    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", port)).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = target.changed() => {}
    }
}

/// A write the gateway acknowledged.
#[derive(Debug, Clone)]
enum Write {
    Transfer { from: i64, to: i64, amount: i64 },
    Credit { user: i64, amount: i64 },
    Purchase { user: i64 },
}

impl Write {
    /// The `economy` arguments that send it.
    fn args(&self) -> Vec<String> {
        let text = |value: &i64| value.to_string();
        match self {
            Self::Transfer { from, to, amount } => {
                ["transfer", "--from", &text(from), "--to", &text(to), "--asset", "POINTS", "--amount", &text(amount)]
                    .map(str::to_owned)
                    .to_vec()
            }
            Self::Credit { user, amount } => {
                ["adjust", "--user", &text(user), "--asset", "POINTS", "--amount", &text(amount), "--reason", "load"]
                    .map(str::to_owned)
                    .to_vec()
            }
            Self::Purchase { user } => {
                ["--user-id", &text(user), "--role", "0", "offer", "buy", "pack"].map(str::to_owned).to_vec()
            }
        }
    }
}

/// An acknowledged write: its key, the id its answer named (transaction or exchange) and
/// the errors of the attempts before (`economy`'s `error: CODE REASON: message` lines).
#[derive(Debug, Clone)]
struct Ack {
    write: Write,
    key: String,
    id: String,
    failures: Vec<String>,
}

/// An answer's head line: `transaction <id>[ (replayed)]` or `exchange <id> <STATUS> …`
/// (after the `idempotency key: …` line).
fn answer_head(run: &Run) -> anyhow::Result<&str> {
    run.lines()
        .into_iter()
        .find(|line| line.starts_with("transaction ") || line.starts_with("exchange "))
        .with_context(|| format!("no transaction or exchange in the answer {:?}", run.stdout))
}

/// The id an answer names (see [`answer_head`]).
fn answer_id(run: &Run) -> anyhow::Result<String> {
    let head = answer_head(run)?;
    head.split_whitespace().nth(1).map(str::to_owned).with_context(|| format!("no id in {head}"))
}

/// Sends `write` with `key`, and again with the same key (after a growing pause) until the
/// gateway answers it: what a client does when a write fails or its answer is lost. The
/// answer, and the errors before it.
async fn until_answered(stack: &Stack, write: &Write, key: &str) -> anyhow::Result<(Run, Vec<String>)> {
    let mut args = write.args();
    args.extend(["--idempotency-key".to_owned(), key.to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let deadline = Instant::now() + ANSWER_DEADLINE;
    let (mut pause, mut failures) = (Duration::from_millis(100), Vec::new());
    loop {
        let run = stack.run(&args).await?;
        if run.code == Some(0) {
            return Ok((run, failures));
        }
        failures.push(run.stderr.lines().next().unwrap_or_default().to_owned());
        anyhow::ensure!(Instant::now() < deadline, "`economy {}` unanswered: {}", args.join(" "), run.stderr);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Writes until `stop`, recording every acknowledged write: workers 0–2 transfer between
/// users, worker 3 credits users, worker 4 buys the pack as each user in turn.
async fn load(
    stack: Arc<Stack>,
    worker: usize,
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
) -> anyhow::Result<()> {
    let mut turn = 0_usize;
    while !stop.load(Ordering::SeqCst) {
        let user = |offset: usize| USERS[(worker + turn + offset) % USERS.len()];
        let write = match worker {
            0..=2 => Write::Transfer { from: user(0), to: user(1), amount: 1 + (turn % 7) as i64 },
            3 => Write::Credit { user: user(0), amount: 3 },
            _ => Write::Purchase { user: user(0) },
        };
        let key = uuid::Uuid::now_v7().to_string();
        let (run, failures) = until_answered(&stack, &write, &key).await?;
        let id = answer_id(&run)?;
        acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push(Ack { write, key, id, failures });
        turn += 1;
    }
    Ok(())
}

fn acked(acks: &Mutex<Vec<Ack>>) -> usize {
    acks.lock().map(|acks| acks.len()).unwrap_or(0)
}

async fn wait_for_acks(
    acks: &Mutex<Vec<Ack>>,
    count: usize,
    load: &mut JoinSet<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + ANSWER_DEADLINE;
    while acked(acks) < count {
        if let Some(ended) = load.try_join_next() {
            ended??;
            anyhow::bail!("a load worker ended early");
        }
        anyhow::ensure!(Instant::now() < deadline, "only {} of {count} writes acknowledged", acked(acks));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Whether an `economy` error line (`error: CODE REASON: message`) names a reason the
/// catalogue tells clients to retry (docs/errors.md): what a failover may answer.
fn is_retryable(error: &str) -> bool {
    let reason = error.split_whitespace().nth(2).map(|reason| reason.trim_end_matches(':'));
    CATALOGUE.iter().any(|entry| Some(entry.reason) == reason && entry.action == Action::Retry)
}

/// POINTS, red_shard, a sword, the offer `pack` (PACK_PRICE POINTS for PACK_SHARDS
/// red_shard and a sword) and `GRANT` POINTS for every user.
async fn catalog(stack: &Stack) -> anyhow::Result<()> {
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["asset", "define", "red_shard", "--name", "Red shard", "--kind", "fragment"]).await?;
    stack.ok(&["template", "define", "sword", "--name", "Sword", "--kind", "equipment"]).await?;
    let (price, shards) = (format!("POINTS:{PACK_PRICE}"), format!("red_shard:{PACK_SHARDS}"));
    let pack = ["offer", "define", "pack", "--name", "Pack", "--price", &price, "--reward-asset", &shards];
    stack.ok(&[&pack[..], &["--reward-item", "sword"]].concat()).await?;
    for user in USERS {
        let (user, grant) = (user.to_string(), GRANT.to_string());
        stack.ok(&["adjust", "--user", &user, "--asset", "POINTS", "--amount", &grant, "--reason", "t"]).await?;
    }
    Ok(())
}

/// Sends every acknowledged write again with its key: the answer must be the original
/// one, replayed (nothing applied twice).
async fn replay_all(stack: &Arc<Stack>, acks: &[Ack]) -> anyhow::Result<()> {
    for chunk in acks.chunks(8) {
        let mut replays = JoinSet::new();
        for ack in chunk.iter().cloned() {
            let stack = Arc::clone(stack);
            replays.spawn(async move {
                let (run, _) = until_answered(&stack, &ack.write, &ack.key).await?;
                let head = answer_head(&run)?;
                anyhow::ensure!(
                    answer_id(&run)? == ack.id && head.ends_with("(replayed)"),
                    "key {} first answered {}, now {head}",
                    ack.key,
                    ack.id
                );
                Ok(())
            });
        }
        while let Some(replay) = replays.join_next().await {
            replay??;
        }
    }
    Ok(())
}

/// Every exchange of `user` once none is still in flight (the market's recovery finishes
/// those a failover interrupted): id → status.
async fn settled_exchanges(stack: &Stack, user: i64) -> anyhow::Result<BTreeMap<String, String>> {
    let deadline = Instant::now() + WAIT_DEADLINE;
    loop {
        let run = stack.ok(&["exchanges", "--user", &user.to_string(), "--page-size", "500"]).await?;
        anyhow::ensure!(run.line_starting("next page").is_none(), "more than one page of exchanges");
        let exchanges: BTreeMap<String, String> = run
            .lines()
            .iter()
            .filter_map(|line| line.strip_prefix("exchange "))
            .filter_map(|rest| {
                let mut words = rest.split_whitespace();
                Some((words.next()?.to_owned(), words.next()?.to_owned()))
            })
            .collect();
        if exchanges.values().all(|status| status == "completed" || status == "failed") {
            return Ok(exchanges);
        }
        anyhow::ensure!(Instant::now() < deadline, "exchanges still in flight: {exchanges:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The ids of every journal entry of `user`'s account, page after page.
async fn history_ids(stack: &Stack, user: i64) -> anyhow::Result<BTreeSet<String>> {
    let (mut ids, mut token) = (BTreeSet::new(), String::new());
    loop {
        let user = user.to_string();
        let page = stack.ok(&["history", "--user", &user, "--page-size", "500", "--page-token", &token]).await?;
        for line in page.lines().iter().filter(|line| !line.starts_with(' ')) {
            ids.extend(line.split("  ").nth(1).map(str::to_owned));
        }
        match page.line_starting("next page: ") {
            Some(line) => token = line.trim_start_matches("next page: ").to_owned(),
            None => return Ok(ids),
        }
    }
}

/// `total T` of the `balance` line of `asset` (0 without one), and its frozen amount.
async fn balance(stack: &Stack, user: i64, asset: &str) -> anyhow::Result<(i64, i64)> {
    let lines = stack.balances(user).await?;
    let Some(line) = lines.iter().find(|line| line.split_whitespace().next() == Some(asset)) else {
        return Ok((0, 0));
    };
    let field = |name: &str| -> anyhow::Result<i64> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|word| *word == name).with_context(|| format!("no {name} in {line}"))?;
        Ok(words.get(at + 1).context("no amount")?.parse()?)
    };
    Ok((field("total")?, field("frozen")?))
}

/// Every user's balances are their grant plus the acknowledged movements, with the
/// purchases that completed; every acknowledged transaction is in its accounts' history.
async fn assert_nothing_lost(stack: &Stack, acks: &[Ack]) -> anyhow::Result<()> {
    let mut completed = BTreeMap::new();
    for user in USERS {
        let exchanges = settled_exchanges(stack, user).await?;
        let bought: Vec<&Ack> =
            acks.iter().filter(|ack| matches!(ack.write, Write::Purchase { user: buyer } if buyer == user)).collect();
        for ack in &bought {
            anyhow::ensure!(exchanges.contains_key(&ack.id), "acknowledged exchange {} is missing", ack.id);
        }
        completed.insert(user, exchanges.values().filter(|status| *status == "completed").count() as i64);
        anyhow::ensure!(exchanges.len() == bought.len(), "user {user}: {exchanges:?} for {} purchases", bought.len());
    }
    for user in USERS {
        let mut points = GRANT - PACK_PRICE * completed[&user];
        let mut transactions = BTreeSet::new();
        for ack in acks {
            match ack.write {
                Write::Transfer { from, to, amount } if from == user || to == user => {
                    points += if to == user { amount } else { -amount };
                    transactions.insert(ack.id.clone());
                }
                Write::Credit { user: credited, amount } if credited == user => {
                    points += amount;
                    transactions.insert(ack.id.clone());
                }
                _ => {}
            }
        }
        assert_eq!(balance(stack, user, "POINTS").await?, (points, 0), "user {user}'s POINTS");
        assert_eq!(balance(stack, user, "red_shard").await?, (PACK_SHARDS * completed[&user], 0), "user {user}");
        let history = history_ids(stack, user).await?;
        let missing: Vec<&String> = transactions.difference(&history).collect();
        assert!(missing.is_empty(), "user {user}: acknowledged transactions missing from history: {missing:?}");
    }
    Ok(())
}

/// The stack's environment: its five databases on the primary, through `forwarder`.
async fn databases_on(pair: &Pair, forwarder: &Forwarder) -> anyhow::Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> =
        STACK_ENV.iter().map(|(name, value)| ((*name).into(), (*value).into())).collect();
    for service in SERVICES {
        pair.tools.query(pair.primary.port, &format!("CREATE DATABASE economy_{service}")).await?;
        let url = format!("postgres://postgres@127.0.0.1:{}/economy_{service}", forwarder.port);
        env.push((format!("ECONOMY_{}__DATABASE_URL", service.to_uppercase()), url));
    }
    Ok(env)
}

#[tokio::test]
async fn a_primary_failover_loses_no_acknowledged_write() -> anyhow::Result<()> {
    let Some(bin) = postgres_bin() else {
        let in_ci = std::env::var(POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
        anyhow::ensure!(!in_ci, "PostgreSQL's server binaries are missing under /usr/lib/postgresql/*/bin");
        eprintln!("skipped: PostgreSQL's server binaries are not installed (/usr/lib/postgresql/*/bin)");
        return Ok(());
    };
    let pair = Pair::start(Tools::new(bin).await?).await?;
    let forwarder = Forwarder::start(pair.primary.port).await?;
    let env = databases_on(&pair, &forwarder).await?;
    let env: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let data_dir = std::env::temp_dir().join(format!("economy-e2e-failover-stack-{}", uuid::Uuid::now_v7().simple()));
    // `start_sqlite_in` creates no test database of its own: `env` names the primary's.
    let stack = Arc::new(Stack::start_sqlite_in(data_dir, &env).await?);
    catalog(&stack).await?;

    let (stop, acks) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
    let mut workers = JoinSet::new();
    for worker in 0..5 {
        workers.spawn(load(Arc::clone(&stack), worker, Arc::clone(&stop), Arc::clone(&acks)));
    }
    wait_for_acks(&acks, WRITES_PER_PHASE, &mut workers).await?;
    pair.fail_over().await?;
    forwarder.point_at(pair.standby.port);
    let at_failover = acked(&acks);
    wait_for_acks(&acks, at_failover + WRITES_PER_PHASE, &mut workers).await?;
    stop.store(true, Ordering::SeqCst);
    while let Some(worker) = workers.join_next().await {
        worker??;
    }

    let acks = acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.clone();
    let failures: Vec<&String> = acks.iter().flat_map(|ack| &ack.failures).collect();
    assert!(!failures.is_empty(), "no write was in flight during the failover: {acks:?}");
    let others: Vec<&&String> = failures.iter().filter(|error| !is_retryable(error)).collect();
    assert!(others.is_empty(), "answers a client would not retry during the failover: {others:?}");
    eprintln!("{} writes acknowledged, {} failed attempts retried with their keys", acks.len(), failures.len());
    replay_all(&stack, &acks).await?;
    assert_nothing_lost(&stack, &acks).await?;
    stack.ok(&["reconcile"]).await?;
    let checked = stack.ok(&["check"]).await?;
    assert!(checked.stdout.starts_with("services are consistent"), "{}", checked.stdout);

    let stack = Arc::into_inner(stack).context("the stack is still shared")?;
    let logs = stack.logs();
    assert_eq!(stack.stop().await?, Some(0), "the stack that lived through the failover stops cleanly: {logs}");
    Ok(())
}
