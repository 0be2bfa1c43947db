//! `economy watch` end to end against the real binary, through the gateway (docs/gateway.md,
//! "Watching a backpack"): a player's credit shows the balance after it the moment it
//! commits, then an item they receive; another player's changes never show; the printed
//! cursor resumes right after a change.

use std::time::Duration;

use anyhow::Context;
use economy_e2e::Stack;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::ChildStdout;

/// Guards against a hung command only (never a timed assertion).
const STALLED: Duration = Duration::from_secs(60);

async fn next_line(lines: &mut Lines<BufReader<ChildStdout>>) -> anyhow::Result<String> {
    let line = tokio::time::timeout(STALLED, lines.next_line()).await.context("`economy watch` printed nothing")??;
    line.context("`economy watch` ended early")
}

/// The cursor at the end of a change line.
fn cursor(line: &str) -> anyhow::Result<&str> {
    line.rsplit_once("  cursor ").map(|(_, cursor)| cursor).with_context(|| format!("no cursor in {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_watches_what_they_receive() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["template", "define", "coffee", "--name", "Free coffee", "--kind", "voucher"]).await?;
    stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "640", "--reason", "welcome"]).await?;

    let mut watch = stack.spawn(&["--user-id", "2", "--role", "0", "watch", "--count", "2"])?;
    let mut lines = BufReader::new(watch.stdout.take().context("stdout")?).lines();
    assert_eq!(next_line(&mut lines).await?, "watching");

    stack.ok(&["adjust", "--user", "3", "--asset", "POINTS", "--amount", "5", "--reason", "not yours"]).await?;
    stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "60", "--reason", "prize"]).await?;
    stack.ok(&["item", "grant", "--user", "2", "--template", "coffee"]).await?;
    // Each source keeps its order; between the two, the order of arrival (on PostgreSQL a
    // ledger entry may wait below the horizon while the item event passes).
    let (first, second) = (next_line(&mut lines).await?, next_line(&mut lines).await?);
    let is_credit = |line: &str| line.contains("+60 POINTS -> 700 available, 0 frozen  ADMIN_ADJUST");
    let is_grant = |line: &str| line.contains(" granted  to user:2");
    assert!((is_credit(&first) && is_grant(&second)) || (is_grant(&first) && is_credit(&second)), "{first}\n{second}");
    let status = tokio::time::timeout(STALLED, watch.wait()).await.context("--count 2 did not stop")??;
    assert!(status.success());

    // Resuming after the first change prints the second again, and nothing before it.
    let after_first = ["--user-id", "2", "--role", "0", "watch", "--after", cursor(&first)?, "--count", "1"];
    let resumed = stack.ok(&after_first).await?;
    let lines = resumed.lines();
    assert_eq!(lines.len(), 2, "{}", resumed.stdout);
    let again = if is_grant(&second) { is_grant(lines[1]) } else { is_credit(lines[1]) };
    assert!(again, "{}", resumed.stdout);
    stack.stop().await?;
    Ok(())
}
