//! The operator's view of the gateway's idempotency records through the real `economy`
//! binary: `economy admin idempotency show` reads a key's record, `release` refuses a
//! record that is not stuck and needs a reason.

use economy_e2e::Stack;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_reads_a_record_and_cannot_release_a_finished_one() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    let key = uuid_like(
        &stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "5", "--reason", "x"]).await?.stdout,
    )?;

    let shown = stack.ok(&["admin", "idempotency", "show", "--user", "1", &key]).await?;
    let line = shown.line_starting("record ").ok_or_else(|| anyhow::anyhow!("no record line:\n{}", shown.stdout))?;
    assert!(line.contains(&format!("user:1 {key} completed LEDGER_ADJUST_BALANCE")), "{line}");
    assert!(shown.stdout.contains("outcome code 0"), "{}", shown.stdout);

    let finished = stack.run(&["admin", "idempotency", "release", "--user", "1", &key, "--reason", "stuck?"]).await?;
    assert_ne!(finished.code, Some(0));
    assert!(finished.stderr.contains("IDEMPOTENCY_RECORD_NOT_PROCESSING"), "{}", finished.stderr);
    let missing = stack.run(&["admin", "idempotency", "show", "--user", "2", &key]).await?;
    assert!(missing.stderr.contains("IDEMPOTENCY_RECORD_NOT_FOUND"), "{}", missing.stderr);
    let plain =
        stack.run(&["--user-id", "2", "--role", "0", "admin", "idempotency", "show", "--user", "1", &key]).await?;
    assert!(plain.stderr.contains("ROLE_TOO_LOW"), "{}", plain.stderr);
    stack.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_the_scheduled_job_runs_of_every_service() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    // A fresh stack: nothing runs at start (docs/operations.md, "Background jobs"), and
    // every service with scheduled jobs answers through the gateway.
    let listed = stack.ok(&["jobs"]).await?;
    assert_eq!(listed.stdout, "", "no run before the first scheduled time");
    stack.ok(&["jobs", "--service", "ledger", "--job", "ledger_reconciliation", "--limit", "5"]).await?;
    let plain = stack.run(&["--user-id", "2", "--role", "0", "jobs", "--service", "redemption"]).await?;
    assert!(plain.stderr.contains("ROLE_TOO_LOW"), "{}", plain.stderr);
    stack.stop().await?;
    Ok(())
}

/// The key a write printed (`idempotency key: K`).
fn uuid_like(stdout: &str) -> anyhow::Result<String> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("idempotency key: "))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no idempotency key printed:\n{stdout}"))
}
