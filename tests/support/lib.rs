//! Support of the workspace end-to-end tests: they run the real, built `economy` binary
//! (`economy up` in a fresh data directory, then its client commands) exactly as a
//! person would from a shell.
//!
//! The binary is found next to the test executable (`target/<profile>/economy`), or at
//! `ECONOMY_BIN`. `cargo test -p economy -p economy-e2e` (or `--workspace`) builds it.
//! With `ECONOMY_TEST_POSTGRES_URL` set, the stack runs on a fresh PostgreSQL database.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use economy_kit::testing::TestDatabase;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// How long `economy up` may take to print its banner, and one client command to finish.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// The built `economy` binary: `ECONOMY_BIN`, else `target/<profile>/economy` found from
/// the test executable (`target/<profile>/deps/<test>`).
pub fn economy_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("ECONOMY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let test_exe = std::env::current_exe()?;
    let profile_dir = test_exe
        .parent()
        .and_then(|deps| deps.parent())
        .context("the test executable is not inside target/<profile>/deps")?;
    let binary = profile_dir.join(format!("economy{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        binary.is_file(),
        "{} is missing: build it with `cargo build -p economy` (or run `cargo test -p economy -p economy-e2e`)",
        binary.display()
    );
    Ok(binary)
}

/// The result of one client command.
#[derive(Debug)]
pub struct Run {
    /// Exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Everything printed to stdout.
    pub stdout: String,
    /// Everything printed to stderr.
    pub stderr: String,
}

impl Run {
    /// Stdout, line by line.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout.lines().collect()
    }

    /// The first stdout line starting with `prefix`.
    pub fn line_starting(&self, prefix: &str) -> Option<&str> {
        self.stdout.lines().find(|line| line.starts_with(prefix))
    }
}

/// A running `economy up` with its own data directory (removed on drop) and database.
/// The child process is killed if the stack is dropped without `stop`.
#[derive(Debug)]
pub struct Stack {
    /// `http://127.0.0.1:<port>` of the gateway, read from the banner.
    pub endpoint: String,
    /// The data directory given to `economy up` and to every client command.
    pub data_dir: PathBuf,
    /// The banner `economy up` printed, line by line.
    pub banner: Vec<String>,
    binary: PathBuf,
    child: Child,
    logs: Arc<Mutex<String>>,
    _databases: Vec<TestDatabase>,
}

impl Stack {
    /// Starts `economy up --data-dir <fresh temp dir>` on a free port and waits for its
    /// banner.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with_env(&[]).await
    }

    /// `start` with extra environment variables for `economy up` (e.g.
    /// `("ECONOMY_LOG__FILTER", "debug")`), set after the test's own defaults.
    pub async fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(&[], env).await
    }

    /// `start_with_env` with extra arguments of `economy up` (e.g. `--tls`).
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let data_dir = std::env::temp_dir().join(format!("economy-e2e-{}", uuid::Uuid::now_v7().simple()));
        let on_postgres = std::env::var(economy_kit::testing::POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
        Self::launch(data_dir, on_postgres, args, env).await
    }

    /// `economy up --data-dir <data_dir>` (removed on drop) with extra environment
    /// variables, on SQLite whatever `ECONOMY_TEST_POSTGRES_URL` says: for what only SQLite
    /// has (`economy backup`), and to start on databases put there first (`economy restore`).
    pub async fn start_sqlite_in(data_dir: PathBuf, env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::launch(data_dir, false, &[], env).await
    }

    async fn launch(data_dir: PathBuf, on_postgres: bool, args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let binary = economy_binary()?;
        let mut databases = Vec::new();
        let mut command = hermetic(&binary);
        command
            .arg("up")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .env("ECONOMY_GATEWAY__LISTEN", "127.0.0.1:0")
            .env("ECONOMY_LEDGER__LISTEN", "127.0.0.1:0")
            .env("ECONOMY_ITEMS__LISTEN", "127.0.0.1:0")
            .env("ECONOMY_REDEMPTION__LISTEN", "127.0.0.1:0")
            .env("ECONOMY_MARKET__LISTEN", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Each service owns its schema: one database each.
        for service in ["GATEWAY", "LEDGER", "ITEMS", "REDEMPTION", "MARKET"].into_iter().filter(|_| on_postgres) {
            let database = TestDatabase::new().await?;
            command.env(format!("ECONOMY_{service}__DATABASE_URL"), &database.url);
            databases.push(database);
        }
        command.envs(env.iter().copied());
        let mut child = command.spawn().with_context(|| format!("cannot start {}", binary.display()))?;
        let logs = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().context("no stdout pipe")?;
        if let Some(stderr) = child.stderr.take() {
            tokio::spawn(drain(stderr, logs.clone()));
        }
        let mut lines = BufReader::new(stdout).lines();
        let mut banner = Vec::new();
        let mut endpoint = None;
        while endpoint.is_none() {
            let line = tokio::time::timeout(STEP_TIMEOUT, lines.next_line())
                .await
                .context("timed out waiting for the `economy up` banner")??;
            let Some(line) = line else {
                let logs = logs.lock().map(|logs| logs.clone()).unwrap_or_default();
                anyhow::bail!("`economy up` exited before printing its endpoint; stdout {banner:?}; stderr:\n{logs}");
            };
            endpoint =
                line.strip_prefix("  gateway  ").and_then(|rest| rest.split_whitespace().next()).map(str::to_owned);
            banner.push(line);
        }
        // The rest of the banner; then keep the pipe drained so the child never blocks.
        while banner.last().is_some_and(|line| line != "press Ctrl-C to stop") {
            match tokio::time::timeout(STEP_TIMEOUT, lines.next_line()).await.context("banner incomplete")?? {
                Some(line) => banner.push(line),
                None => break,
            }
        }
        tokio::spawn(drain(lines.into_inner(), logs.clone()));
        let endpoint = endpoint.context("no endpoint")?;
        Ok(Self { endpoint, data_dir, banner, binary, child, logs, _databases: databases })
    }

    /// `economy --endpoint <stack> --data-dir <stack dir> <args…>`, not started.
    fn client(&self, args: &[&str]) -> Command {
        let mut command = hermetic(&self.binary);
        command
            .arg("--endpoint")
            .arg(&self.endpoint)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// Starts a client command that runs on (`economy watch`), its stdout piped; killed
    /// when dropped.
    pub fn spawn(&self, args: &[&str]) -> anyhow::Result<Child> {
        let mut command = self.client(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        command.spawn().with_context(|| format!("cannot start `economy {}`", args.join(" ")))
    }

    /// Runs `economy --endpoint <stack> --data-dir <stack dir> <args…>`.
    pub async fn run(&self, args: &[&str]) -> anyhow::Result<Run> {
        let mut command = self.client(args);
        let output = tokio::time::timeout(STEP_TIMEOUT, command.output())
            .await
            .with_context(|| format!("`economy {}` timed out", args.join(" ")))??;
        Ok(Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Like `run`, but fails (showing both streams and the stack's logs) unless the command
    /// exits 0.
    pub async fn ok(&self, args: &[&str]) -> anyhow::Result<Run> {
        let run = self.run(args).await?;
        if run.code != Some(0) {
            anyhow::bail!(
                "`economy {}` exited with {:?}\nstdout:\n{}\nstderr:\n{}\nstack logs:\n{}",
                args.join(" "),
                run.code,
                run.stdout,
                run.stderr,
                self.logs()
            );
        }
        Ok(run)
    }

    /// The `balance` lines of `user`: `ASSET  available A  frozen F  total T`.
    pub async fn balances(&self, user: i64) -> anyhow::Result<Vec<String>> {
        let run = self.ok(&["balance", "--user", &user.to_string()]).await?;
        Ok(run.lines().into_iter().map(str::to_owned).collect())
    }

    /// What `economy up` logged so far (stderr, and stdout after the banner).
    pub fn logs(&self) -> String {
        self.logs.lock().map(|logs| logs.clone()).unwrap_or_default()
    }

    /// What `economy up` logged so far, readable after `stop` (which consumes the stack):
    /// the logs keep growing until the process has exited and its pipes are drained.
    pub fn log_reader(&self) -> impl Fn() -> String + use<> {
        let logs = self.logs.clone();
        move || logs.lock().map(|logs| logs.clone()).unwrap_or_default()
    }

    /// Stops the stack like Ctrl-C would (SIGTERM on unix, a kill elsewhere) and returns
    /// its exit status.
    pub async fn stop(mut self) -> anyhow::Result<Option<i32>> {
        #[cfg(unix)]
        if let Some(pid) = self.child.id() {
            let status = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await?;
            anyhow::ensure!(status.success(), "cannot signal economy up ({pid})");
        }
        #[cfg(not(unix))]
        self.child.start_kill()?;
        match tokio::time::timeout(STEP_TIMEOUT, self.child.wait()).await {
            Ok(status) => Ok(status?.code()),
            Err(_) => {
                self.child.kill().await?;
                anyhow::bail!("`economy up` did not stop within {STEP_TIMEOUT:?}")
            }
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A command for `binary` without any inherited `ECONOMY_*` variable, so the caller's
/// environment cannot redirect the test.
fn hermetic(binary: &Path) -> Command {
    let mut command = Command::new(binary);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ECONOMY_") {
            command.env_remove(name);
        }
    }
    command
}

/// Appends everything `reader` yields to `logs` until end of stream.
async fn drain(mut reader: impl AsyncRead + Unpin, logs: Arc<Mutex<String>>) {
    let mut buffer = [0_u8; 4096];
    while let Ok(read @ 1..) = reader.read(&mut buffer).await {
        if let Ok(mut logs) = logs.lock() {
            logs.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    }
}
