//! The real `economy-gateway` binary at start (docs/gateway.md, "Start-up refusals";
//! docs/operations.md, "Configuration"): it refuses an unknown key and each unsafe
//! non-development setting, naming it, and a production configuration whose identity
//! provider is unreachable still starts.

#![allow(missing_docs, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const IDENTITY_SECRET: &str = "startup-test-identity-secret";

struct Run {
    dir: PathBuf,
    config: PathBuf,
}

impl Run {
    /// A fresh directory holding `config` (TOML) after the settings every run needs: a
    /// loopback listener and a SQLite file in the directory.
    fn new(config: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("economy-gateway-startup-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("gateway.toml");
        let database = format!("sqlite://{}", dir.join("gateway.db").display());
        let base = format!("[gateway]\nlisten = \"127.0.0.1:0\"\ndatabase_url = \"{database}\"\n");
        std::fs::write(&file, format!("{base}{config}")).unwrap();
        Self { dir, config: file }
    }

    fn command(&self, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_economy-gateway"));
        for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("ECONOMY_")) {
            command.env_remove(name);
        }
        command.arg("--config").arg(&self.config).env("ECONOMY_IDENTITY__SECRET", IDENTITY_SECRET);
        command.envs(env.iter().copied()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        command.kill_on_drop(true);
        command
    }

    /// Runs the binary, which must exit with status 1; its stderr.
    async fn refused(&self, env: &[(&str, &str)]) -> String {
        let output = tokio::time::timeout(Duration::from_secs(60), self.command(env).output()).await.unwrap().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        stderr
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const PRODUCTION_AUTH: &str = "[gateway.auth]\njwks_url = \"https://127.0.0.1:9/certs\"\nissuer = \"https://idp.example.com\"\naudience = \"economy\"\n";

#[tokio::test]
async fn an_unknown_key_is_named_with_its_source() {
    let run = Run::new(&format!("{PRODUCTION_AUTH}jwks_url_typo = \"x\"\n"));
    let stderr = run.refused(&[]).await;
    assert!(stderr.contains(&format!("gateway.auth.jwks_url_typo (from file {})", run.config.display())), "{stderr}");
    let stderr = run.refused(&[("ECONOMY_GATEWAY__REFLECTON", "off")]).await;
    assert!(stderr.contains("gateway.reflecton (from environment variable ECONOMY_GATEWAY__REFLECTON)"), "{stderr}");
}

#[tokio::test]
async fn each_unsafe_setting_outside_development_is_named() {
    let hs256 = Run::new("[gateway.auth]\nhs256_secret = \"a-development-secret-0123\"\n");
    assert!(hs256.refused(&[]).await.contains("gateway.auth.hs256_secret"));
    let cors =
        Run::new(&format!("[gateway.cors]\nallowed_origins = [\"*\"]\nallow_credentials = true\n{PRODUCTION_AUTH}"));
    assert!(cors.refused(&[]).await.contains("gateway.cors.allow_credentials"));
    let tls = Run::new(&format!("[gateway.tls]\ncert_file = \"cert.pem\"\nkey_file = \"key.pem\"\n{PRODUCTION_AUTH}"));
    assert!(tls.refused(&[]).await.contains("gateway.reflection"));
}

/// Waits until the child logs `serving` on stderr; panics if it exits first.
async fn wait_serving(child: &mut Child) -> String {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap();
        let Some(line) = line else { panic!("the gateway exited before serving:\n{seen}") };
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("serving") {
            return seen;
        }
    }
}

#[tokio::test]
async fn development_and_an_unreachable_provider_do_not_stop_the_start() {
    // HS256 in a development gateway (the compose file's settings).
    let development = Run::new("[gateway.auth]\nhs256_secret = \"a-development-secret-0123\"\n");
    let mut child = development.command(&[("ECONOMY_GATEWAY__DEVELOPMENT", "true")]).spawn().unwrap();
    wait_serving(&mut child).await;
    child.kill().await.unwrap();

    // A production gateway whose JWKS cannot be fetched starts, and says so.
    let production = Run::new(PRODUCTION_AUTH);
    let mut child = production.command(&[]).spawn().unwrap();
    let logs = wait_serving(&mut child).await;
    assert!(logs.contains("JWKS fetch failed"), "{logs}");
    child.kill().await.unwrap();
}

/// The `toml` blocks of README.md's section `heading`.
fn readme_toml(heading: &str) -> String {
    let readme = include_str!("../../../README.md");
    let section = readme.split(heading).nth(1).unwrap().split("\n#").next().unwrap();
    section.split("```toml\n").skip(1).map(|block| block.split("```").next().unwrap()).collect()
}

#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Settings {
    gateway: economy_gateway::config::GatewayConfig,
}

#[test]
fn the_readme_examples_are_valid_configuration() {
    let run = Run::new(&format!("{}{}", readme_toml("### OIDC tokens"), readme_toml("### CORS")));
    let settings: Settings = economy_kit::config::load_from(Some(&run.config), Default::default()).unwrap();
    let gateway = settings.gateway;
    assert_eq!(gateway.auth.role_list_claim, "realm_access.roles");
    assert_eq!(gateway.auth.role_map.get("economy-staff"), Some(&50));
    assert!(economy_gateway::auth::Authenticator::new(&gateway.auth).is_ok());
    assert!(gateway.cors.layer().is_ok());
    economy_gateway::safety::refuse_unsafe(&gateway).unwrap();
}
