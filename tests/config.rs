//! Configuration safety of the real `economy` binary (docs/operations.md, "Configuration"):
//! `economy up` refuses to start on an unknown key, naming the key and the file or the
//! environment variable it came from, `ECONOMY_` variables that are not of the
//! `ECONOMY_<SECTION>__<KEY>` form do not disturb it, and its development defaults let a
//! page of this machine call the gateway (docs/gateway.md, "CORS").

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use economy_e2e::{Stack, economy_binary};
use tokio::process::Command;

/// `economy up` with `config` (if any) and `env`, expected to refuse to start: its exit
/// status and stderr.
async fn refused_start(config: Option<&str>, env: &[(&str, &str)]) -> anyhow::Result<(Option<i32>, String, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("economy-e2e-config-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("economy.toml");
    let mut command = Command::new(economy_binary()?);
    for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("ECONOMY_")) {
        command.env_remove(name);
    }
    command.arg("--data-dir").arg(dir.join("data")).arg("up");
    if let Some(text) = config {
        std::fs::write(&file, text)?;
        command.arg("--config").arg(&file);
    }
    command.envs(env.iter().copied()).env("ECONOMY_GATEWAY__LISTEN", "127.0.0.1:0");
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .context("`economy up` did not refuse to start within 60 s")??;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    std::fs::remove_dir_all(&dir)?;
    Ok((output.status.code(), stderr, file))
}

#[tokio::test]
async fn an_unknown_key_in_the_file_is_named_with_the_file() -> anyhow::Result<()> {
    let config = "[gateway.auth]\njwks_url = \"https://idp.example.com/certs\"\njwks_urll = \"typo\"\n";
    let (code, stderr, file) = refused_start(Some(config), &[]).await?;
    assert_eq!(code, Some(1), "{stderr}");
    let expected = format!("gateway.auth.jwks_urll (from file {})", file.display());
    assert!(stderr.contains(&expected), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_key_in_the_environment_is_named_with_the_variable() -> anyhow::Result<()> {
    let (code, stderr, _) = refused_start(None, &[("ECONOMY_GATEWAY__CORS__ALLOWED_ORIGIN", "*")]).await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr
            .contains("gateway.cors.allowed_origin (from environment variable ECONOMY_GATEWAY__CORS__ALLOWED_ORIGIN)"),
        "{stderr}"
    );
    let (code, stderr, _) = refused_start(None, &[("ECONOMY_GATWAY__LISTEN", "127.0.0.1:0")]).await?;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("gatway (from environment variable ECONOMY_GATWAY__LISTEN)"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn other_economy_variables_are_not_configuration() -> anyhow::Result<()> {
    let env = [
        ("ECONOMY_TEST_POSTGRES_RESTART", "1"),
        ("ECONOMY_BENCH_POSTGRES_URL", "postgres://nowhere/none"),
        ("ECONOMY_IMAGE", "economy:dev"),
        ("ECONOMY_FAULTS_SEED", "7"),
    ];
    let stack = Stack::start_with_env(&env).await?;
    stack.ok(&["balance", "--user", "1"]).await?;
    stack.stop().await?;
    Ok(())
}

/// The answer head to a CORS preflight from `origin`, sent over HTTP/1.1 to `endpoint`
/// (`http://host:port`).
async fn preflight(endpoint: &str, origin: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = endpoint.strip_prefix("http://").context("a plaintext endpoint")?;
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "OPTIONS /economy.ledger.v1.LedgerService/ListAssets HTTP/1.1\r\nhost: {address}\r\norigin: {origin}\r\n\
         access-control-request-method: POST\r\naccess-control-request-headers: authorization,content-type\r\n\
         connection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer.split("\r\n\r\n").next().unwrap_or_default().to_ascii_lowercase())
}

#[tokio::test]
async fn economy_up_lets_a_page_of_this_machine_call_the_gateway() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let local = preflight(&stack.endpoint, "http://localhost:5173").await?;
    assert!(local.contains("access-control-allow-origin: http://localhost:5173"), "{local}");
    assert!(local.contains("access-control-max-age: 600"), "{local}");
    let other = preflight(&stack.endpoint, "https://elsewhere.example").await?;
    assert!(!other.contains("access-control-allow-origin"), "{other}");
    stack.stop().await?;
    Ok(())
}

/// A command whose reader stopped early (`economy history | head`) ends quietly, as Unix
/// tools do, instead of panicking on the closed pipe.
#[test]
fn output_into_a_closed_pipe_ends_the_command_without_a_panic() -> anyhow::Result<()> {
    let (reader, writer) = std::io::pipe()?;
    drop(reader);
    let output = std::process::Command::new(economy_binary()?)
        .args(["--jwt-secret", "a-test-secret", "token", "--user-id", "2"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(output.status.code(), Some(141), "ended as by SIGPIPE: {:?} {stderr}", output.status);
    Ok(())
}
