//! Migrate-only mode with the real `economy` binary (docs/operations.md, "Migrations"):
//! with `database.migrate_on_start = false` the stack refuses unmigrated databases, naming
//! the setting; `economy migrate --service S` migrates one database, `economy migrate` the
//! rest, a second run applies nothing, and the stack then starts and serves. On SQLite,
//! and on PostgreSQL when `ECONOMY_TEST_POSTGRES_URL` is set.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use economy_e2e::{Stack, economy_binary};
use economy_kit::testing::{POSTGRES_URL_ENV, TestDatabase};
use tokio::process::Command;

/// The services in the order `economy migrate` takes them (`Service::ALL`).
const SERVICES: [&str; 5] = ["ledger", "items", "redemption", "market", "gateway"];

/// One database per service: fresh PostgreSQL databases, or SQLite files in `dir`.
struct Databases {
    urls: Vec<(String, String)>,
    _postgres: Vec<TestDatabase>,
}

impl Databases {
    async fn new(dir: &Path) -> anyhow::Result<Self> {
        let on_postgres = std::env::var(POSTGRES_URL_ENV).is_ok_and(|url| !url.is_empty());
        let (mut urls, mut postgres) = (Vec::new(), Vec::new());
        for service in SERVICES {
            let url = if on_postgres {
                let database = TestDatabase::new().await?;
                let url = database.url.clone();
                postgres.push(database);
                url
            } else {
                format!("sqlite://{}", dir.join(format!("{service}.db")).display())
            };
            urls.push((format!("ECONOMY_{}__DATABASE_URL", service.to_uppercase()), url));
        }
        Ok(Self { urls, _postgres: postgres })
    }

    /// The URLs, and `migrate_on_start = false` for every service.
    fn env(&self) -> Vec<(String, String)> {
        let off = SERVICES
            .iter()
            .map(|service| (format!("ECONOMY_{}__DATABASE__MIGRATE_ON_START", service.to_uppercase()), "false".into()));
        self.urls.iter().cloned().chain(off).collect()
    }
}

/// `economy --data-dir <dir> <args…>` with `env` and no inherited `ECONOMY_*` variable:
/// exit status, stdout, stderr.
async fn economy(dir: &Path, args: &[&str], env: &[(String, String)]) -> anyhow::Result<(Option<i32>, String, String)> {
    let mut command = Command::new(economy_binary()?);
    for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("ECONOMY_")) {
        command.env_remove(name);
    }
    command.arg("--data-dir").arg(dir).args(args).envs(env.iter().map(|(name, value)| (name, value)));
    for service in SERVICES {
        command.env(format!("ECONOMY_{}__LISTEN", service.to_uppercase()), "127.0.0.1:0");
    }
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .with_context(|| format!("`economy {}` did not end within 60 s", args.join(" ")))??;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    Ok((output.status.code(), text(&output.stdout), text(&output.stderr)))
}

#[tokio::test]
async fn services_that_do_not_migrate_on_start_wait_for_economy_migrate() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("economy-e2e-migrate-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let databases = Databases::new(&dir).await?;
    let env = databases.env();

    let (code, _, stderr) = economy(&dir, &["up"], &env).await?;
    assert_eq!(code, Some(1), "an unmigrated stack must not start: {stderr}");
    assert!(stderr.contains("database.migrate_on_start is false") && stderr.contains("economy migrate"), "{stderr}");

    let (code, stdout, stderr) = economy(&dir, &["migrate", "--service", "ledger"], &env).await?;
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(!lines.is_empty() && lines.iter().all(|line| line.starts_with("ledger      applied ")), "{stdout}");
    let (code, _, stderr) = economy(&dir, &["up"], &env).await?;
    assert_eq!(code, Some(1), "four databases are still unmigrated: {stderr}");

    let (code, stdout, stderr) = economy(&dir, &["migrate"], &env).await?;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("ledger      up to date\n"), "{stdout}");
    for service in ["gateway", "items", "redemption", "market"] {
        assert!(stdout.contains(&format!("{service:<10}  applied 1 ")), "{service}: {stdout}");
    }
    let (code, again, stderr) = economy(&dir, &["migrate"], &env).await?;
    assert_eq!(code, Some(0), "{stderr}");
    let up_to_date: Vec<String> = SERVICES.iter().map(|service| format!("{service:<10}  up to date")).collect();
    assert_eq!(again.lines().collect::<Vec<_>>(), up_to_date, "a second run applies nothing");

    let pairs: Vec<(&str, &str)> = env.iter().map(|(name, value)| (name.as_str(), value.as_str())).collect();
    let stack = Stack::start_with_env(&pairs).await?;
    stack.ok(&["asset", "define", "GEMS", "--name", "Gems", "--kind", "currency"]).await?;
    stack.ok(&["adjust", "--user", "7", "--asset", "GEMS", "--amount", "5", "--reason", "migrated"]).await?;
    assert_eq!(stack.balances(7).await?.len(), 1, "the migrated stack serves reads and writes");
    stack.stop().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
