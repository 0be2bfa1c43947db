//! A browser page calls the gateway over gRPC-web from another origin, as a studio's web
//! app would: headless Chromium (Debian's `chromium`, driven by `playwright-core`) loads
//! `clients/typescript/example/index.html` from a static server of this test (one
//! 127.0.0.1 port), and the page calls the real `economy up` (another port) with a user's
//! token: `GetBackpack`, a `ConvertAsset` with an `idempotency-key`, the same write again
//! (answered `idempotent-replayed: true`, applied once), and a conversion the balance
//! cannot cover, whose `google.rpc.ErrorInfo` the page decodes (`INSUFFICIENT_BALANCE`).
//!
//! The stack runs `economy up --tls`: the gateway serves its throwaway development
//! certificate, which the browser accepts by its public key only
//! (`--ignore-certificate-errors-spki-list`, computed by the driver from the certificate
//! file); a browser without that pin is refused. The gateway allows exactly the page's
//! origin (`gateway.cors.allowed_origins`); a page of an origin it does not list cannot
//! call it.
//!
//! Needs `node` and Chromium (`CHROMIUM`, default `/usr/bin/chromium`); without them the
//! test is skipped with a note. With them it needs the built package:
//! `cd clients/typescript && npm ci && npm run generate && npm run build` (.ci/run does).

use std::path::{Component, Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, ensure};
use economy_e2e::Stack;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::task::JoinHandle;

/// How long one page run (browser start, page load, its calls) may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(120);
/// The user whose page it is, and the conversion it applies (README's quickstart assets).
const USER: i64 = 2;
const RULE: &str = "shard_to_crystal";
const QUANTITY: i64 = 3;
/// The gateway's development certificate under the data directory of `economy up --tls`.
const DEV_SERVER_CERT: &str = "tls/server.pem";

/// `clients/typescript`, the package holding the page and its browser driver.
fn package_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/typescript")
}

/// Node and Chromium, found on this machine.
struct Browser {
    chromium: PathBuf,
}

impl Browser {
    /// `None` (the test is skipped) without `node` or Chromium; an error when they exist
    /// but the package is not built.
    async fn find() -> anyhow::Result<Option<Self>> {
        let chromium = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
        let node = Command::new("node").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().await;
        if !node.is_ok_and(|status| status.success()) || !chromium.is_file() {
            return Ok(None);
        }
        let package = package_dir();
        for built in ["node_modules/playwright-core", "example/dist/app.js"] {
            ensure!(
                package.join(built).exists(),
                "{} is missing: run `npm ci && npm run generate && npm run build` in {}",
                built,
                package.display()
            );
        }
        Ok(Some(Self { chromium }))
    }

    /// Opens `url` and returns what the page wrote: `{"state": "done"|"failed", "result": …}`.
    async fn open(&self, url: &str, trusted_cert: Option<&Path>) -> anyhow::Result<Value> {
        let mut command = Command::new("node");
        command.current_dir(package_dir()).arg("test/browser.mjs").arg(url).arg("--chromium").arg(&self.chromium);
        if let Some(cert) = trusted_cert {
            command.arg("--trust-cert").arg(cert);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        let output = tokio::time::timeout(PAGE_TIMEOUT, command.output()).await.context("the page timed out")??;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stdout.lines().last().with_context(|| format!("the driver printed nothing; stderr:\n{stderr}"))?;
        serde_json::from_str(line).with_context(|| format!("not JSON: {line}; stderr:\n{stderr}"))
    }
}

/// A static file server of `root` on a free 127.0.0.1 port: the web app's origin.
struct StaticSite {
    origin: String,
    server: JoinHandle<()>,
}

impl StaticSite {
    async fn serve(root: PathBuf) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer(stream, root.clone()));
            }
        });
        Ok(Self { origin, server })
    }

    /// The example page's URL on this site, calling `gateway` with `token`.
    fn page(&self, gateway: &str, token: &str) -> String {
        format!(
            "{}/index.html?gateway={gateway}&token={token}&user={USER}&rule={RULE}&quantity={QUANTITY}",
            self.origin
        )
    }
}

impl Drop for StaticSite {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Answers one `GET` with the file below `root` (404 when none), then closes.
async fn answer(mut stream: TcpStream, root: PathBuf) {
    let mut head = Vec::new();
    let mut buffer = [0_u8; 4096];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buffer).await {
            Ok(read @ 1..) => head.extend_from_slice(&buffer[..read]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let target = head.split_whitespace().nth(1).unwrap_or("/");
    let path = target.split('?').next().unwrap_or("/").trim_start_matches('/');
    let file = Path::new(path);
    let inside = file.components().all(|component| matches!(component, Component::Normal(_)));
    let (status, body, kind) = match tokio::fs::read(root.join(file)).await {
        Ok(body) if inside => ("200 OK", body, content_type(file)),
        _ => ("404 Not Found", b"not found".to_vec(), "text/plain"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&body).await;
    let _ = stream.shutdown().await;
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|extension| extension.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A configuration file of `economy up` allowing exactly `origin` (removed on drop).
struct CorsConfig(PathBuf);

impl CorsConfig {
    fn allowing(origin: &str) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("economy-browser-{}.toml", uuid::Uuid::now_v7().simple()));
        std::fs::write(&path, format!("[gateway.cors]\nallowed_origins = [\"{origin}\"]\n"))?;
        Ok(Self(path))
    }
}

impl Drop for CorsConfig {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The README's shards and crystals: user 2 holds 65 red shards, 10 make a crystal.
async fn seed(stack: &Stack) -> anyhow::Result<()> {
    stack.ok(&["asset", "define", "red_shard", "--name", "Red shard", "--kind", "fragment"]).await?;
    stack.ok(&["asset", "define", "red_crystal", "--name", "Red crystal", "--kind", "material"]).await?;
    stack.ok(&["rule", "define", RULE, "--from", "red_shard:10", "--to", "red_crystal:1"]).await?;
    let user = USER.to_string();
    stack
        .ok(&["adjust", "--user", &user, "--asset", "red_shard", "--amount", "65", "--reason", "quest reward"])
        .await?;
    Ok(())
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or_default()
}

#[tokio::test]
async fn a_page_of_another_origin_calls_the_gateway_over_grpc_web() -> anyhow::Result<()> {
    let Some(browser) = Browser::find().await? else {
        println!("note: skipped: needs `node` and Chromium (CHROMIUM or /usr/bin/chromium)");
        return Ok(());
    };
    let root = package_dir().join("example");
    let site = StaticSite::serve(root.clone()).await?;
    let unlisted = StaticSite::serve(root).await?;
    let config = CorsConfig::allowing(&site.origin)?;
    let config_path = config.0.to_string_lossy().into_owned();
    let stack = Stack::start_with(&["--tls", "--config", &config_path], &[]).await?;
    seed(&stack).await?;
    let user = USER.to_string();
    let token = stack.ok(&["token", "--user-id", &user, "--role", "0", "--ttl", "1h"]).await?.stdout.trim().to_owned();

    ensure!(stack.endpoint.starts_with("https://"), "the gateway serves TLS: {}", stack.endpoint);
    let cert = stack.data_dir.join(DEV_SERVER_CERT);

    let page = browser.open(&site.page(&stack.endpoint, &token), Some(&cert)).await?;
    let logs = || stack.logs();
    ensure!(text(&page, "/state") == "done", "the page failed: {page}\nstack logs:\n{}", logs());
    let result = &page["result"];
    assert_eq!(text(result, "/origin"), site.origin);
    assert_ne!(site.origin, stack.endpoint, "the page must come from another origin");
    assert_eq!(text(result, "/before/red_shard"), "65");
    let written = text(result, "/write/transaction");
    assert!(!written.is_empty(), "{result}");
    assert_eq!(result["write"]["replayed"], Value::Bool(false), "{result}");
    assert_eq!(text(result, "/retry/key"), text(result, "/write/key"));
    assert_eq!(text(result, "/retry/transaction"), written, "the retry answers the stored outcome");
    assert_eq!(result["retry"]["replayed"], Value::Bool(true), "idempotent-replayed: true on the retry");
    assert_eq!((text(result, "/after/red_shard"), text(result, "/after/red_crystal")), ("35", "3"), "{result}");
    assert_eq!(result["refusal"]["code"], Value::from(9), "FAILED_PRECONDITION: {result}");
    assert_eq!(text(result, "/refusal/reason"), "INSUFFICIENT_BALANCE", "{result}");
    assert_eq!(text(result, "/refusal/domain"), "economy.ledger", "{result}");
    assert_eq!(text(result, "/refusal/metadata/asset_code"), "red_shard", "{result}");
    // Applied once, whatever the page did.
    let balances = stack.balances(USER).await?;
    assert!(balances.iter().any(|line| line == "red_crystal  available 3  frozen 0  total 3"), "{balances:?}");

    // A browser that does not trust the certificate, and an origin the gateway does not
    // list: the browser refuses the calls, nothing moves.
    let untrusted = browser.open(&site.page(&stack.endpoint, &token), None).await?;
    let unlisted = browser.open(&unlisted.page(&stack.endpoint, &token), Some(&cert)).await?;
    for refused in [untrusted, unlisted] {
        assert_eq!(text(&refused, "/state"), "failed", "{refused}");
        assert!(text(&refused, "/result/error").contains("Failed to fetch"), "{refused}");
    }
    assert_eq!(stack.balances(USER).await?, balances);
    stack.stop().await?;
    Ok(())
}
