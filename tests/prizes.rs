//! Items and redemption codes end to end against the real `economy` binary, through the
//! gateway: grant a prize, generate its code as the owner, fulfil it as merchant staff,
//! see the item used — and find the code in no log line and no replay.

use economy_e2e::{Run, Stack};

fn id_after(run: &Run, prefix: &str) -> anyhow::Result<String> {
    let line = run.line_starting(prefix).ok_or_else(|| anyhow::anyhow!("no `{prefix}` line in:\n{}", run.stdout))?;
    line.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| anyhow::anyhow!("bad line {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_redeem_and_fulfil_a_prize() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.ok(&["template", "define", "coffee", "--name", "Free coffee", "--kind", "voucher", "--redeemable"]).await?;
    let templates = stack.ok(&["template", "list"]).await?;
    assert_eq!(templates.lines(), [r#"coffee  voucher  "Free coffee"  redeemable"#]);
    let granted = stack.ok(&["item", "grant", "--user", "2", "--template", "coffee", "--reason", "lottery"]).await?;
    let item = id_after(&granted, "item ")?;
    assert!(granted.stdout.contains(&format!("item {item} coffee available  owner user:2")), "{}", granted.stdout);

    let owner = ["--user-id", "2", "--role", "0"];
    let key = "idem_0190f0a4-2b9c-7d1e-8f00-00000000c0de";
    let created =
        stack.ok(&[&owner[..], &["redeem", "create", "--item", &item, "--idempotency-key", key]].concat()).await?;
    let code_line = created.line_starting("code: ").ok_or_else(|| anyhow::anyhow!("no code in {}", created.stdout))?;
    let code = code_line.trim_start_matches("code: ").to_owned();
    assert_eq!(code.len(), 14, "{code}");
    let order = id_after(&created, "order ")?;
    let shown = stack.ok(&["item", "show", &item]).await?;
    assert!(shown.stdout.contains(&format!("locked  owner user:2  holder redemption:{order}")), "{}", shown.stdout);

    // A replay through the gateway never shows the code again.
    let replay =
        stack.ok(&[&owner[..], &["redeem", "create", "--item", &item, "--idempotency-key", key]].concat()).await?;
    assert!(replay.line_starting(&format!("order {order} pending")).is_some_and(|line| line.ends_with("(replayed)")));
    assert!(!replay.stdout.contains(&code), "{}", replay.stdout);

    let customer_fulfil = stack.run(&[&owner[..], &["redeem", "fulfill", &code]].concat()).await?;
    assert!(customer_fulfil.stderr.starts_with("error: PERMISSION_DENIED ROLE_TOO_LOW"), "{}", customer_fulfil.stderr);
    let staff = ["--user-id", "7", "--role", "50"];
    let fulfilled = stack.ok(&[&staff[..], &["redeem", "fulfill", &code.to_lowercase()]].concat()).await?;
    assert!(fulfilled.line_starting(&format!("order {order} fulfilled")).is_some(), "{}", fulfilled.stdout);
    assert!(fulfilled.lines().contains(&format!("item {item} consumed").as_str()), "{}", fulfilled.stdout);
    let used = stack.ok(&["item", "show", &item]).await?;
    assert!(used.stdout.contains(&format!("item {item} coffee used")), "{}", used.stdout);
    let again = stack.run(&[&staff[..], &["redeem", "fulfill", &code]].concat()).await?;
    assert!(again.stderr.starts_with("error: FAILED_PRECONDITION CODE_ALREADY_USED"), "{}", again.stderr);
    let wrong = stack.run(&[&staff[..], &["redeem", "fulfill", "ABCD-EFGH-JK0O"]].concat()).await?;
    assert!(wrong.stderr.starts_with("error: INVALID_ARGUMENT CODE_INVALID_FORMAT"), "{}", wrong.stderr);

    let logs = stack.logs();
    assert!(!logs.is_empty());
    for form in [code.clone(), code.replace('-', ""), code.to_lowercase()] {
        assert!(!logs.contains(&form), "the code {form} appears in the logs");
    }
    // Nor in any file of the stack (the SQLite databases and their WAL, when on SQLite).
    for entry in std::fs::read_dir(&stack.data_dir)? {
        let bytes = std::fs::read(entry?.path())?;
        for form in [code.clone(), code.replace('-', "")] {
            assert!(!bytes.windows(form.len()).any(|window| window == form.as_bytes()), "{form} is stored");
        }
    }
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}
