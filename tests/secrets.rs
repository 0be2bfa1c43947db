//! No secret in the logs (docs/operations.md, "Observability": secrets are never logged):
//! the real `economy up` logs at `debug` as JSON lines, with its access lines (one per
//! RPC), while a full scenario runs — a bearer token sent on every call, a redemption
//! code created and fulfilled, a market trade — then every log line is searched for the
//! token, the code (each form a person could type), the internal identity secret and the
//! JWT secret.

use economy_e2e::{Run, Stack};

fn id_after(run: &Run, prefix: &str) -> anyhow::Result<String> {
    let line = run.line_starting(prefix).ok_or_else(|| anyhow::anyhow!("no `{prefix}` line in:\n{}", run.stdout))?;
    line.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| anyhow::anyhow!("bad line {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_logs_of_a_full_scenario_carry_no_secret() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[("ECONOMY_LOG__FILTER", "debug"), ("ECONOMY_LOG__JSON", "true")]).await?;
    let identity_secret = std::fs::read_to_string(stack.data_dir.join("dev-identity.secret"))?.trim().to_owned();
    let jwt_secret = std::fs::read_to_string(stack.data_dir.join("dev-jwt.secret"))?.trim().to_owned();
    assert!(identity_secret.len() >= 16 && jwt_secret.len() >= 16);

    // An explicit admin token, sent as `authorization: Bearer <token>` on every call below.
    let token = stack.ok(&["token", "--user-id", "1", "--role", "100", "--ttl", "1h"]).await?.stdout.trim().to_owned();
    assert!(token.len() > 32, "{token}");
    let admin = |args: &[&'static str]| [&["--token", token.as_str()][..], args].concat();
    stack
        .ok(&admin(&["template", "define", "coffee", "--name", "Coffee", "--kind", "voucher", "--redeemable"]))
        .await?;
    let granted =
        stack.ok(&admin(&["item", "grant", "--user", "2", "--template", "coffee", "--reason", "prize"])).await?;
    let item = id_after(&granted, "item ")?;
    let created = stack.ok(&["--user-id", "2", "--role", "0", "redeem", "create", "--item", &item]).await?;
    let code = created
        .line_starting("code: ")
        .map(|line| line.trim_start_matches("code: ").to_owned())
        .ok_or_else(|| anyhow::anyhow!("no code in {}", created.stdout))?;
    let failed = stack.run(&["--user-id", "7", "--role", "50", "redeem", "fulfill", "ABCD-EFGH-JK23"]).await?;
    assert!(failed.code != Some(0), "an unknown code is refused");
    stack.ok(&["--user-id", "7", "--role", "50", "redeem", "fulfill", &code]).await?;
    let used = stack.ok(&["--token", &token, "item", "show", &item]).await?;
    assert!(used.stdout.contains(&format!("item {item} coffee used")), "{}", used.stdout);
    // A trade, so the market's calls to the ledger are in the logs too.
    stack.ok(&admin(&["asset", "define", "DIAMOND", "--name", "Diamond", "--kind", "currency"])).await?;
    stack.ok(&admin(&["asset", "define", "gem", "--name", "Gem", "--kind", "material"])).await?;
    stack.ok(&admin(&["adjust", "--user", "3", "--asset", "DIAMOND", "--amount", "100", "--reason", "top-up"])).await?;
    stack.ok(&admin(&["adjust", "--user", "2", "--asset", "gem", "--amount", "5", "--reason", "quest"])).await?;
    let listed = stack
        .ok(&["--user-id", "2", "--role", "0", "market", "sell", "--asset", "gem:5", "--price", "DIAMOND:50"])
        .await?;
    let listing = id_after(&listed, "listing ")?;
    stack.ok(&["--user-id", "3", "--role", "0", "market", "buy", &listing]).await?;

    let logs = stack.logs();
    let lines: Vec<&str> = logs.lines().filter(|line| line.starts_with('{')).collect();
    assert!(lines.len() > 50, "debug JSON logs were captured ({} lines)", lines.len());
    assert!(lines.iter().any(|line| line.contains("\"level\":\"DEBUG\"")), "debug level is on");
    let access = lines.iter().filter(|line| line.contains("\"target\":\"economy::access\"")).count();
    assert!(access > 10, "access lines are searched too ({access})");
    let secrets = [
        ("the bearer token", token.clone()),
        ("the token's signature", token.rsplit('.').next().unwrap_or_default().to_owned()),
        ("the redemption code", code.clone()),
        ("the redemption code, normalized", code.replace('-', "")),
        ("the redemption code, lowercase", code.to_lowercase()),
        ("the identity secret", identity_secret),
        ("the JWT secret", jwt_secret),
    ];
    for (what, secret) in &secrets {
        assert!(secret.len() >= 12, "{what} is long enough to search for");
        if let Some(line) = logs.lines().find(|line| line.contains(secret.as_str())) {
            panic!("{what} appears in the logs: {line}");
        }
    }
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}
