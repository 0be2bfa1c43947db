//! `economy up --tls` through the real binary (docs/operations.md, "TLS"): the whole
//! stack serves TLS with a throwaway development CA generated into the data directory,
//! and the client commands trust that CA through `--data-dir`; a client trusting another
//! certificate, or speaking plaintext, is refused.

use economy_e2e::{Stack, economy_binary};

#[tokio::test]
async fn economy_up_tls_serves_everything_over_tls_and_the_cli_trusts_its_ca() -> anyhow::Result<()> {
    let stack = Stack::start_with(&["--tls"], &[]).await?;
    assert!(stack.endpoint.starts_with("https://127.0.0.1:"), "{}", stack.endpoint);
    for service in ["ledger", "items", "redemption", "market"] {
        let line = stack.banner.iter().find(|line| line.trim_start().starts_with(service)).expect("banner line");
        assert!(line.contains("https://127.0.0.1:"), "{line}");
    }
    let ca = stack.data_dir.join("tls").join("ca.pem");
    assert!(stack.banner.iter().any(|line| line.contains(&ca.display().to_string())), "{:?}", stack.banner);

    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "40", "--reason", "tls"]).await?;
    let balances = stack.balances(2).await?;
    assert!(balances.iter().any(|line| line.starts_with("POINTS") && line.contains("available 40")), "{balances:?}");
    let health = stack.ok(&["health", &stack.endpoint]).await?;
    assert_eq!(health.stdout.trim(), "SERVING");

    // Another certificate as the CA (the client's own leaf) and plaintext both fail.
    let not_the_ca = stack.data_dir.join("tls").join("client.pem");
    let wrong = stack.run(&["--ca-file", &not_the_ca.display().to_string(), "balance", "--user", "2"]).await?;
    assert_eq!(wrong.code, Some(1), "{wrong:?}");
    assert!(wrong.stderr.contains("cannot connect to the gateway"), "{}", wrong.stderr);
    let plaintext = stack.endpoint.replacen("https://", "http://", 1);
    let plain = tokio::process::Command::new(economy_binary()?)
        .args(["--endpoint", &plaintext, "--data-dir"])
        .arg(&stack.data_dir)
        .args(["balance", "--user", "2"])
        .output()
        .await?;
    assert_eq!(plain.status.code(), Some(1), "{plain:?}");
    assert!(String::from_utf8_lossy(&plain.stderr).starts_with("error: "), "{plain:?}");
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}
