//! Backup and restore end to end against the real `economy` binary (docs/operations.md,
//! "Backup and restore"): a backup taken while transfers, shop purchases (exchange sagas
//! across the market, the ledger and items) and redemptions (orders locking and, through
//! redemption's outbox, consuming items) run through the gateway, restored into
//! a new data directory, starts a stack whose recovery workers finish what was in flight:
//! the services agree, the ledger reconciles, every asset still sums to zero and no money
//! stays frozen. A changed or truncated backup, a non-empty target, a non-empty backup
//! directory and a PostgreSQL database are refused.
//!
//! The stacks run on SQLite whatever `ECONOMY_TEST_POSTGRES_URL` says: `economy backup`
//! copies SQLite files (PostgreSQL has its own tools, refused here by name).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use economy_e2e::{Run, Stack, economy_binary};
use economy_proto::gateway::v1::CheckConsistencyRequest;
use economy_proto::gateway::v1::operations_service_client::OperationsServiceClient;
use tokio::task::JoinSet;
use tonic::metadata::MetadataValue;

const USERS: [i64; 4] = [2, 3, 4, 5];
const ASSETS: [&str; 2] = ["POINTS", "red_shard"];
const SYSTEM_ACCOUNTS: [&str; 3] = ["SYSTEM_ISSUANCE", "SYSTEM_PLATFORM_FEE", "SYSTEM_SHOP_REVENUE"];
const GRANT: i64 = 100_000;
/// The request timeout of both stacks: it bounds an exchange's claim (timeout + 1 s),
/// which the restored stack's recovery waits out for an exchange running at the backup.
const SHORT_CLAIMS: (&str, &str) = ("ECONOMY_SERVER__REQUEST_TIMEOUT_SECS", "5");
/// Job intervals of the restored stack, so its workers run within seconds.
const SHORT_JOBS: [(&str, &str); 4] = [
    SHORT_CLAIMS,
    ("ECONOMY_MARKET__RECOVERY_INTERVAL_SECS", "1"),
    ("ECONOMY_MARKET__STALE_AFTER_SECS", "1"),
    ("ECONOMY_REDEMPTION__OUTBOX_INTERVAL_SECS", "1"),
];
/// How many polls of a restored stack's state before giving up (each after a short pause).
const POLLS: usize = 240;

/// A fresh path under the temporary directory (not created).
fn temp_path(what: &str) -> PathBuf {
    std::env::temp_dir().join(format!("economy-e2e-{what}-{}", uuid::Uuid::now_v7().simple()))
}

/// Runs `economy <args…>` outside any stack, without inherited `ECONOMY_*` variables
/// and with `env` set.
async fn economy(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Run> {
    let mut command = tokio::process::Command::new(economy_binary()?);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ECONOMY_") {
            command.env_remove(name);
        }
    }
    command.args(args).envs(env.iter().copied()).stdin(Stdio::null()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .with_context(|| format!("`economy {}` timed out", args.join(" ")))??;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Like [`economy`], failing unless it exits 0.
async fn economy_ok(args: &[&str]) -> anyhow::Result<Run> {
    let run = economy(args, &[]).await?;
    anyhow::ensure!(run.code == Some(0), "`economy {}` failed: {}{}", args.join(" "), run.stdout, run.stderr);
    Ok(run)
}

fn path(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// POINTS and red_shard, a sword, a redeemable coffee, an offer `pack` (10 POINTS for 5
/// red_shard and a sword) and `GRANT` POINTS for every user.
async fn catalog(stack: &Stack) -> anyhow::Result<()> {
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["asset", "define", "red_shard", "--name", "Red shard", "--kind", "fragment"]).await?;
    stack.ok(&["template", "define", "sword", "--name", "Sword", "--kind", "equipment"]).await?;
    stack.ok(&["template", "define", "coffee", "--name", "Coffee", "--kind", "voucher", "--redeemable"]).await?;
    let pack = ["offer", "define", "pack", "--name", "Pack", "--price", "POINTS:10", "--reward-asset", "red_shard:5"];
    stack.ok(&[&pack[..], &["--reward-item", "sword"]].concat()).await?;
    for user in USERS {
        let user = user.to_string();
        stack
            .ok(&["adjust", "--user", &user, "--asset", "POINTS", "--amount", &GRANT.to_string(), "--reason", "t"])
            .await?;
    }
    Ok(())
}

/// Writes through the gateway until `stop`: worker 0 transfers POINTS round the users,
/// worker 1 grants a coffee, has its owner create a redemption order and staff fulfil it,
/// the others buy `pack` as users in turn; each success counts in `done`.
async fn load(stack: Arc<Stack>, worker: usize, stop: Arc<AtomicBool>, done: Arc<AtomicUsize>) -> anyhow::Result<()> {
    let mut turn = 0;
    while !stop.load(Ordering::SeqCst) {
        let (from, to) = (USERS[turn % USERS.len()], USERS[(turn + 1) % USERS.len()]);
        let (from, to) = (from.to_string(), to.to_string());
        if worker == 0 {
            stack.ok(&["transfer", "--from", &from, "--to", &to, "--asset", "POINTS", "--amount", "1"]).await?;
        } else if worker == 1 {
            redeem(&stack, &from).await?;
        } else {
            stack.ok(&["--user-id", &from, "--role", "0", "offer", "buy", "pack"]).await?;
        }
        done.fetch_add(1, Ordering::SeqCst);
        turn += 1;
    }
    Ok(())
}

/// Grants `user` a coffee, creates its redemption order as the owner and fulfils the code
/// as staff.
async fn redeem(stack: &Stack, user: &str) -> anyhow::Result<()> {
    let granted = stack.ok(&["item", "grant", "--user", user, "--template", "coffee"]).await?;
    let item = word_after(&granted, "item ")?;
    let created = stack.ok(&["--user-id", user, "--role", "0", "redeem", "create", "--item", &item]).await?;
    let code = created.line_starting("code: ").context("no code")?.trim_start_matches("code: ").to_owned();
    stack.ok(&["--user-id", "7", "--role", "50", "redeem", "fulfill", &code]).await?;
    Ok(())
}

/// The second word of the first line starting with `prefix` (an id).
fn word_after(run: &Run, prefix: &str) -> anyhow::Result<String> {
    let line = run.line_starting(prefix).with_context(|| format!("no `{prefix}` line in {}", run.stdout))?;
    line.split_whitespace().nth(1).map(str::to_owned).context("no id")
}

/// Waits until `done` reaches `count` (the load workers are running).
async fn wait_for(done: &AtomicUsize, count: usize) -> anyhow::Result<()> {
    for _ in 0..POLLS * 4 {
        if done.load(Ordering::SeqCst) >= count {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the load reached {} operations, not {count}", done.load(Ordering::SeqCst))
}

/// The total of one balance line: `ASSET  available A  frozen F  total T`.
fn total_and_frozen(line: &str) -> anyhow::Result<(i64, i64)> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let frozen = words.get(4).context("no frozen")?.parse()?;
    let total = words.get(6).context("no total")?.parse()?;
    Ok((total, frozen))
}

/// Every asset sums to zero across the users and the system accounts, no user has money
/// frozen, and the POINTS issued are the grants.
async fn assert_conserved(stack: &Stack) -> anyhow::Result<()> {
    for asset in ASSETS {
        let mut sum = 0;
        for user in USERS {
            let run = stack.ok(&["balance", "--user", &user.to_string(), "--asset", asset]).await?;
            let (total, frozen) = total_and_frozen(run.stdout.trim())?;
            assert_eq!(frozen, 0, "user {user} has {asset} frozen: {}", run.stdout);
            sum += total;
        }
        for system in SYSTEM_ACCOUNTS {
            let run = stack.ok(&["balance", "--system", system, "--asset", asset]).await?;
            let (total, _) = total_and_frozen(run.stdout.trim())?;
            if (system, asset) == ("SYSTEM_ISSUANCE", "POINTS") {
                assert_eq!(total, -GRANT * USERS.len() as i64, "{}", run.stdout);
            }
            sum += total;
        }
        assert_eq!(sum, 0, "{asset} does not sum to zero");
    }
    Ok(())
}

/// The gateway's consistency findings with one second of grace, so that nothing in flight
/// hides behind the default five minutes.
async fn findings(stack: &Stack) -> anyhow::Result<Vec<String>> {
    let secret = std::fs::read_to_string(stack.data_dir.join("dev-jwt.secret"))?;
    let token = economy_gateway::auth::mint_hs256(secret.trim(), 1, 100, 600)?;
    let mut client = OperationsServiceClient::connect(stack.endpoint.clone()).await?;
    let mut request = tonic::Request::new(CheckConsistencyRequest { grace_seconds: 1 });
    request.metadata_mut().insert("authorization", MetadataValue::try_from(format!("Bearer {token}"))?);
    let report = client.check_consistency(request).await?.into_inner();
    Ok(report.findings.iter().map(|finding| format!("{} {}", finding.kind, finding.description)).collect())
}

/// Polls the restored stack until its recovery workers have finished every exchange and
/// the services agree; fails with what is left otherwise.
async fn converge(stack: &Stack) -> anyhow::Result<()> {
    let mut left = Vec::new();
    for _ in 0..POLLS {
        let stuck = stack.ok(&["exchanges", "--stuck", "1"]).await?;
        left = if stuck.stdout.trim() == "no stuck exchanges" {
            findings(stack).await?
        } else {
            stuck.lines().iter().map(|line| line.to_string()).collect()
        };
        if left.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    anyhow::bail!("the restored stack did not converge:\n{}\n{}", left.join("\n"), stack.logs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_load_restores_to_a_clean_stack() -> anyhow::Result<()> {
    let stack = Arc::new(Stack::start_sqlite_in(temp_path("source"), &[SHORT_CLAIMS]).await?);
    catalog(&stack).await?;
    let (stop, done) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let mut workers = JoinSet::new();
    for worker in 0..4 {
        workers.spawn(load(stack.clone(), worker, stop.clone(), done.clone()));
    }
    wait_for(&done, 20).await?;
    let backup = temp_path("backup");
    let taken = stack.ok(&["backup", path(&backup)]).await?;
    let written = done.load(Ordering::SeqCst);
    wait_for(&done, written + 10).await?;
    stop.store(true, Ordering::SeqCst);
    while let Some(worker) = workers.join_next().await {
        worker??;
    }
    assert_eq!(taken.lines().len(), 6, "{}", taken.stdout);
    assert!(taken.stdout.contains("gateway     gateway.db  "), "{}", taken.stdout);
    let stack = Arc::into_inner(stack).context("a worker still holds the stack")?;
    assert_eq!(stack.stop().await?, Some(0));

    let restored = temp_path("restored");
    let run = economy_ok(&["restore", path(&backup), "--data-dir", path(&restored)]).await?;
    assert!(run.stdout.starts_with("restored 5 databases of "), "{}", run.stdout);
    let stack = Stack::start_sqlite_in(restored, &SHORT_JOBS).await?;
    converge(&stack).await?;
    let check = stack.ok(&["check"]).await?;
    assert!(check.stdout.starts_with("services are consistent ("), "{}", check.stdout);
    let reconcile = stack.ok(&["reconcile"]).await?;
    assert!(reconcile.stdout.starts_with("ledger is consistent ("), "{}", reconcile.stdout);
    assert_conserved(&stack).await?;
    let bought = stack.ok(&["exchanges", "--user", "2"]).await?;
    assert!(bought.stdout.contains("completed"), "the purchases before the backup are restored: {}", bought.stdout);
    assert_eq!(stack.stop().await?, Some(0));
    std::fs::remove_dir_all(&backup)?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_or_a_used_directory_is_refused() -> anyhow::Result<()> {
    let stack = Stack::start_sqlite_in(temp_path("source"), &[]).await?;
    catalog(&stack).await?;
    let backup = temp_path("backup");
    stack.ok(&["backup", path(&backup)]).await?;
    let again = stack.run(&["backup", path(&backup)]).await?;
    assert_eq!(again.code, Some(1), "{}", again.stderr);
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);
    assert_eq!(stack.stop().await?, Some(0));

    let used = temp_path("used");
    std::fs::create_dir_all(&used)?;
    std::fs::write(used.join("notes.txt"), "keep")?;
    let refused = economy(&["restore", path(&backup), "--data-dir", path(&used)], &[]).await?;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.contains("is not empty"), "{}", refused.stderr);
    assert_eq!(std::fs::read_dir(&used)?.count(), 1);

    let ledger = backup.join("ledger.db");
    let original = std::fs::read(&ledger)?;
    let mut changed = original.clone();
    let last = changed.len() - 1;
    changed[last] ^= 1;
    for damaged in [changed, original[..original.len() / 2].to_vec()] {
        std::fs::write(&ledger, damaged)?;
        let target = temp_path("target");
        let refused = economy(&["restore", path(&backup), "--data-dir", path(&target)], &[]).await?;
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);
        assert!(refused.stderr.contains("does not match the manifest"), "{}", refused.stderr);
        assert!(!target.exists(), "nothing is written for a damaged backup");
    }
    std::fs::write(&ledger, &original)?;
    let target = temp_path("target");
    economy_ok(&["restore", path(&backup), "--data-dir", path(&target)]).await?;
    for directory in [&backup, &used, &target] {
        std::fs::remove_dir_all(directory)?;
    }
    Ok(())
}

#[tokio::test]
async fn a_postgres_database_is_refused_with_the_procedure() -> anyhow::Result<()> {
    let backup = temp_path("backup");
    let postgres = [("ECONOMY_LEDGER__DATABASE_URL", "postgres://127.0.0.1:1/ledger")];
    let refused = economy(&["backup", path(&backup), "--data-dir", path(&temp_path("data"))], &postgres).await?;
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(refused.stderr.starts_with("error: ledger.database_url is not a SQLite database"), "{}", refused.stderr);
    assert!(refused.stderr.contains("docs/operations.md, \"Backup and restore\""), "{}", refused.stderr);
    assert!(!backup.exists());
    Ok(())
}
