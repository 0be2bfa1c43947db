//! The README quickstart, end to end, against the real `economy` binary: `economy up` in
//! a fresh data directory, then the client commands a person would type (DESIGN.md §6),
//! every one through the gateway with a token and an idempotency key.

use economy_e2e::{Run, Stack};

/// The hold id of the `hold <id> <status> <amount> <asset>` line.
fn hold_id(run: &Run) -> anyhow::Result<String> {
    let line = run.line_starting("hold ").ok_or_else(|| anyhow::anyhow!("no hold line in:\n{}", run.stdout))?;
    line.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| anyhow::anyhow!("bad hold line {line}"))
}

/// The `transaction <id>…` line.
fn transaction_line(run: &Run) -> anyhow::Result<String> {
    run.line_starting("transaction ")
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no transaction line in:\n{}", run.stdout))
}

/// Journal entry headers of `history` (postings are indented).
fn entry_headers(run: &Run) -> Vec<&str> {
    run.lines().into_iter().filter(|line| !line.starts_with(' ') && !line.starts_with("next page:")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let data = stack.data_dir.display().to_string();
    assert_eq!(stack.banner.len(), 9, "{:?}", stack.banner);
    assert_eq!(stack.banner[0], "economy is up");
    assert_eq!(stack.banner[1], format!("  gateway     {}  (public: gRPC and gRPC-web)", stack.endpoint));
    for (line, service) in stack.banner[2..6].iter().zip(["ledger", "items", "redemption", "market"]) {
        assert!(line.starts_with(&format!("  {service:<10}  http://127.0.0.1:")), "{line}");
        assert!(line.ends_with("  (internal)"), "{line}");
    }
    assert_eq!(stack.banner[6], format!("  data        {data}"));
    assert_eq!(
        stack.banner[7],
        format!("development tokens: HS256 signed with {data}/dev-jwt.secret (`economy token --user-id 1 --role 100`)")
    );

    // Catalog and conversion rule.
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["asset", "define", "red_shard", "--name", "Red shard", "--kind", "fragment"]).await?;
    stack
        .ok(&["asset", "define", "red_crystal", "--name", "Red crystal", "--kind", "material", "--meta", "tier=2"])
        .await?;
    let assets = stack.ok(&["asset", "list"]).await?;
    assert_eq!(
        assets.lines(),
        [
            r#"POINTS  currency  "Points""#,
            r#"red_crystal  material  "Red crystal"  tier=2"#,
            r#"red_shard  fragment  "Red shard""#
        ]
    );
    stack.ok(&["rule", "define", "shard_to_crystal", "--from", "red_shard:10", "--to", "red_crystal:1"]).await?;
    let rules = stack.ok(&["rule", "list"]).await?;
    assert_eq!(rules.lines(), ["shard_to_crystal  10 red_shard -> 1 red_crystal  enabled"]);

    // Grant user 2 some POINTS and shards.
    stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "1000", "--reason", "welcome"]).await?;
    stack.ok(&["adjust", "--user", "2", "--asset", "red_shard", "--amount", "35", "--reason", "drop"]).await?;

    // Transfer, then retry with the same key: replayed, nothing moves twice.
    let transfer = ["transfer", "--from", "2", "--to", "3", "--asset", "POINTS", "--amount", "300"];
    let key = "idem_0190f0a4-2b9c-7d1e-8f00-0123456789ab";
    let first = stack.ok(&[&transfer[..], &["--idempotency-key", key, "--memo", "rent"]].concat()).await?;
    assert!(first.lines().contains(&format!("idempotency key: {key}").as_str()), "{}", first.stdout);
    let first_line = transaction_line(&first)?;
    assert!(!first_line.ends_with("(replayed)"), "{first_line}");
    let retry = stack.ok(&[&transfer[..], &["--idempotency-key", key, "--memo", "rent"]].concat()).await?;
    assert_eq!(transaction_line(&retry)?, format!("{first_line} (replayed)"));
    assert_eq!(
        stack.balances(2).await?,
        ["POINTS  available 700  frozen 0  total 700", "red_shard  available 35  frozen 0  total 35"]
    );
    assert_eq!(stack.balances(3).await?, ["POINTS  available 300  frozen 0  total 300"]);

    // Hold 100, settle 60 of it to user 3; the other 40 returns to user 2.
    let created = stack
        .ok(&["hold", "create", "--user", "2", "--asset", "POINTS", "--amount", "100", "--expires-in", "1h"])
        .await?;
    let hold = hold_id(&created)?;
    assert!(created.line_starting(&format!("hold {hold} open 100 POINTS")).is_some(), "{}", created.stdout);
    let frozen = stack.ok(&["balance", "--user", "2", "--asset", "POINTS"]).await?;
    assert_eq!(frozen.lines(), ["POINTS  available 600  frozen 100  total 700"]);
    let settled = stack.ok(&["hold", "settle", &hold, "--to", "3", "--amount", "60"]).await?;
    assert!(
        settled.line_starting(&format!("hold {hold} settled 100 POINTS  settled 60")).is_some(),
        "{}",
        settled.stdout
    );
    let shown = stack.ok(&["hold", "show", &hold]).await?;
    assert!(shown.line_starting(&format!("hold {hold} settled 100 POINTS")).is_some(), "{}", shown.stdout);
    let open_holds = stack.ok(&["hold", "list", "--user", "2", "--status", "open"]).await?;
    assert_eq!(open_holds.lines(), ["no holds"]);
    assert_eq!(
        stack.balances(2).await?,
        ["POINTS  available 640  frozen 0  total 640", "red_shard  available 35  frozen 0  total 35"]
    );
    assert_eq!(stack.balances(3).await?, ["POINTS  available 360  frozen 0  total 360"]);

    // Convert 3 x (10 red_shard -> 1 red_crystal).
    stack.ok(&["convert", "--user", "2", "--rule", "shard_to_crystal", "--quantity", "3"]).await?;
    assert_eq!(
        stack.balances(2).await?,
        [
            "POINTS  available 640  frozen 0  total 640",
            "red_crystal  available 3  frozen 0  total 3",
            "red_shard  available 5  frozen 0  total 5",
        ]
    );

    // An overdraft fails cleanly and moves nothing.
    let overdraft =
        stack.run(&["transfer", "--from", "2", "--to", "3", "--asset", "POINTS", "--amount", "5000"]).await?;
    assert_eq!(overdraft.code, Some(1), "{overdraft:?}");
    assert!(overdraft.stderr.starts_with("error: FAILED_PRECONDITION INSUFFICIENT_BALANCE: "), "{}", overdraft.stderr);
    assert_eq!(stack.balances(3).await?, ["POINTS  available 360  frozen 0  total 360"]);

    // Validation failures name the field; forged tokens, low roles and bad keys are refused.
    let invalid = stack.run(&["asset", "define", "9bad", "--name", "x", "--kind", "quota"]).await?;
    assert_eq!(invalid.code, Some(1), "{invalid:?}");
    assert!(invalid.stderr.contains("INVALID_ARGUMENT VALIDATION_FAILED"), "{}", invalid.stderr);
    assert!(invalid.stderr.lines().any(|line| line.starts_with("  field asset.code: ")), "{}", invalid.stderr);
    let forged = stack.run(&["--jwt-secret", "not-the-stack-secret-0123", "reconcile"]).await?;
    assert_eq!(forged.code, Some(1), "{forged:?}");
    assert!(forged.stderr.starts_with("error: UNAUTHENTICATED TOKEN_INVALID: "), "{}", forged.stderr);
    let user_token = stack.ok(&["token", "--user-id", "2", "--role", "0", "--ttl", "10m"]).await?;
    let user_token = user_token.stdout.trim();
    let own = stack.ok(&["--token", user_token, "balance", "--user", "2", "--asset", "red_shard"]).await?;
    assert_eq!(own.lines(), ["red_shard  available 5  frozen 0  total 5"]);
    let grant = ["adjust", "--user", "2", "--asset", "POINTS", "--amount", "1", "--reason", "self-service"];
    let denied = stack.run(&[&["--token", user_token][..], &grant[..]].concat()).await?;
    assert!(denied.stderr.starts_with("error: PERMISSION_DENIED ROLE_TOO_LOW: "), "{}", denied.stderr);
    let bad_key = stack.run(&[&grant[..], &["--idempotency-key", "order-42"]].concat()).await?;
    assert!(bad_key.stderr.starts_with("error: INVALID_ARGUMENT INVALID_IDEMPOTENCY_KEY: "), "{}", bad_key.stderr);

    // History: adjust x2, transfer, hold create, hold settle, convert; paged by 4.
    let history = stack.ok(&["history", "--user", "2"]).await?;
    let headers = entry_headers(&history);
    assert_eq!(headers.len(), 6, "{}", history.stdout);
    assert!(headers[0].contains("ASSET_CONVERT"), "{}", history.stdout);
    assert!(headers.iter().any(|header| header.contains("TRANSFER") && header.ends_with("\"rent\"")));
    assert!(history.stdout.contains("  user:2  POINTS  -300  available"), "{}", history.stdout);
    let page = stack.ok(&["history", "--user", "2", "--page-size", "4"]).await?;
    assert_eq!(entry_headers(&page).len(), 4, "{}", page.stdout);
    let token = page
        .line_starting("next page: ")
        .and_then(|line| line.strip_prefix("next page: "))
        .ok_or_else(|| anyhow::anyhow!("no next page in:\n{}", page.stdout))?;
    let rest = stack.ok(&["history", "--user", "2", "--page-size", "4", "--page-token", token]).await?;
    assert_eq!(entry_headers(&rest).len(), 2, "{}", rest.stdout);
    assert!(rest.line_starting("next page: ").is_none(), "{}", rest.stdout);
    let shards = stack.ok(&["history", "--user", "2", "--asset", "red_shard"]).await?;
    assert_eq!(entry_headers(&shards).len(), 2, "{}", shards.stdout);

    let reconcile = stack.ok(&["reconcile"]).await?;
    let verdict = reconcile.lines();
    assert!(
        verdict.len() == 1
            && verdict[0].starts_with("ledger is consistent (")
            && verdict[0].ends_with(" assets checked)"),
        "{}",
        reconcile.stdout
    );

    let data_dir = stack.data_dir.clone();
    assert_eq!(stack.stop().await?, Some(0), "economy up should exit 0 on SIGTERM");
    assert!(!data_dir.exists(), "the temporary data directory is removed");
    Ok(())
}
