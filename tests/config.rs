//! Configuration safety of the real `economy` binary (docs/operations.md, "Configuration"):
//! `economy up` refuses to start on an unknown key, naming the key and the file or the
//! environment variable it came from, and `ECONOMY_` variables that are not of the
//! `ECONOMY_<SECTION>__<KEY>` form do not disturb it.

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
