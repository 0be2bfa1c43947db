//! The shop and reward bundles end to end against the real `economy` binary, through the
//! gateway (docs/market.md, "Offers" and "Exchanges"): an offer priced in POINTS that
//! gives an asset and an item, bought, seen in `economy exchanges` and in the backpack,
//! paid to the revenue account; the user's limit, a refused payment that charges nothing,
//! a disabled offer; a lottery bundle granted exactly once; services that still agree.

use economy_e2e::{Run, Stack};

const BUYER: [&str; 4] = ["--user-id", "2", "--role", "0"];
const POOR: [&str; 4] = ["--user-id", "3", "--role", "0"];

/// `args` run as `who`.
fn as_user<'a>(who: &[&'a str], args: &[&'a str]) -> Vec<&'a str> {
    [who, args].concat()
}

/// The second word of the first line starting with `prefix` (an id).
fn id_after(run: &Run, prefix: &str) -> anyhow::Result<String> {
    let line = run.line_starting(prefix).ok_or_else(|| anyhow::anyhow!("no `{prefix}` line in:\n{}", run.stdout))?;
    line.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| anyhow::anyhow!("bad line {line}"))
}

/// The first stdout line starting with `prefix`, or an error showing stdout.
fn line<'a>(run: &'a Run, prefix: &str) -> anyhow::Result<&'a str> {
    run.line_starting(prefix).ok_or_else(|| anyhow::anyhow!("no `{prefix}` line in:\n{}", run.stdout))
}

/// The item ids of the `  item <id> <template>` lines under an exchange.
fn granted_items(run: &Run, template: &str) -> Vec<String> {
    run.lines()
        .iter()
        .filter_map(|line| line.strip_prefix("  item "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, rest)| rest.trim_end() == template)
        .map(|(id, _)| id.to_owned())
        .collect()
}

async fn setup_catalog(stack: &Stack) -> anyhow::Result<()> {
    stack.ok(&["asset", "define", "POINTS", "--name", "Points", "--kind", "currency"]).await?;
    stack.ok(&["asset", "define", "red_shard", "--name", "Red shard", "--kind", "fragment"]).await?;
    stack.ok(&["template", "define", "sword", "--name", "Sword", "--kind", "equipment"]).await?;
    stack.ok(&["template", "define", "coffee", "--name", "Free coffee", "--kind", "voucher"]).await?;
    stack.ok(&["adjust", "--user", "2", "--asset", "POINTS", "--amount", "1000", "--reason", "welcome"]).await?;
    stack.ok(&["adjust", "--user", "3", "--asset", "POINTS", "--amount", "50", "--reason", "welcome"]).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buy_an_offer_and_grant_a_lottery_bundle() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    setup_catalog(&stack).await?;

    let defined = stack
        .ok(&[
            "offer",
            "define",
            "starter",
            "--name",
            "Starter pack",
            "--price",
            "POINTS:100",
            "--reward-asset",
            "red_shard:50",
            "--reward-item",
            "sword",
            "--stock",
            "10",
            "--limit-total",
            "3",
        ])
        .await?;
    let offer_line = "offer starter active  \"Starter pack\"  price 100 POINTS  reward 50 red_shard + sword x1  \
                      stock 10 (0 sold, 10 left)  limit 3 per user";
    assert_eq!(line(&defined, "offer ")?, format!("{offer_line} (created)"));
    let listed = stack.ok(&["offer", "list"]).await?;
    assert_eq!(listed.lines(), [offer_line]);

    let bought = stack.ok(&as_user(&BUYER, &["offer", "buy", "starter", "--quantity", "2"])).await?;
    let exchange = id_after(&bought, "exchange ")?;
    let head = line(&bought, "exchange ")?;
    assert!(
        head.starts_with(&format!(
            "exchange {exchange} completed  offer starter x2  paid 200 POINTS  granted 100 red_shard + 2 items  user:2"
        )),
        "{}",
        bought.stdout
    );
    let swords = granted_items(&bought, "sword");
    assert_eq!(swords.len(), 2, "{}", bought.stdout);

    let exchanges = stack.ok(&as_user(&BUYER, &["exchanges"])).await?;
    assert_eq!(line(&exchanges, "exchange ")?, head);
    assert_eq!(granted_items(&exchanges, "sword"), swords);
    let shown = stack.ok(&as_user(&BUYER, &["exchanges", "--id", &exchange])).await?;
    assert_eq!(shown.lines()[0], head);
    let stuck = stack.ok(&["exchanges", "--stuck"]).await?;
    assert_eq!(stuck.lines(), ["no stuck exchanges"]);

    let backpack = stack.ok(&as_user(&BUYER, &["backpack"])).await?;
    assert_eq!(
        backpack.lines()[..3],
        [
            "backpack of user:2",
            "asset POINTS  \"Points\"  available 800  frozen 0  total 800",
            "asset red_shard  \"Red shard\"  available 100  frozen 0  total 100",
        ]
    );
    for sword in &swords {
        assert!(backpack.stdout.contains(&format!("item {sword} sword available")), "{}", backpack.stdout);
    }
    let revenue = stack.ok(&["balance", "--system", "SYSTEM_SHOP_REVENUE", "--asset", "POINTS"]).await?;
    assert_eq!(revenue.lines(), ["POINTS  available 200  frozen 0  total 200"]);

    refusals(&stack).await?;
    lottery_bundle(&stack).await?;

    let check = stack.ok(&["check"]).await?;
    assert!(check.stdout.starts_with("services are consistent ("), "{}", check.stdout);
    let reconcile = stack.ok(&["reconcile"]).await?;
    assert!(reconcile.stdout.starts_with("ledger is consistent ("), "{}", reconcile.stdout);
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}

/// The user's limit, a refused payment (nothing charged, the stock given back) and a
/// disabled offer.
async fn refusals(stack: &Stack) -> anyhow::Result<()> {
    let over = stack.run(&as_user(&BUYER, &["offer", "buy", "starter", "--quantity", "2"])).await?;
    assert_eq!(over.code, Some(1), "{}", over.stdout);
    assert!(over.stderr.starts_with("error: FAILED_PRECONDITION PURCHASE_LIMIT_REACHED"), "{}", over.stderr);

    let poor = stack.run(&as_user(&POOR, &["offer", "buy", "starter"])).await?;
    assert!(poor.stderr.starts_with("error: FAILED_PRECONDITION INSUFFICIENT_BALANCE"), "{}", poor.stderr);
    let shown = line(&poor, "exchange ")?;
    assert!(
        shown.contains(" failed  offer starter x1  failed INSUFFICIENT_BALANCE POINTS  nothing charged"),
        "{shown}"
    );
    assert_eq!(stack.balances(3).await?, ["POINTS  available 50  frozen 0  total 50"]);
    let failed = stack.ok(&as_user(&POOR, &["exchanges"])).await?;
    let failed = line(&failed, "exchange ")?;
    assert!(
        failed.contains(" failed  offer starter x1  failed INSUFFICIENT_BALANCE POINTS  nothing charged  user:3"),
        "{failed}"
    );
    let offer = stack.ok(&["offer", "get", "starter"]).await?;
    assert!(line(&offer, "offer ")?.contains("stock 10 (2 sold, 8 left)"), "{}", offer.stdout);

    let disabled = stack.ok(&["offer", "disable", "starter"]).await?;
    assert!(line(&disabled, "offer ")?.starts_with("offer starter disabled "), "{}", disabled.stdout);
    let closed = stack.run(&as_user(&BUYER, &["offer", "buy", "starter"])).await?;
    assert!(closed.stderr.starts_with("error: FAILED_PRECONDITION OFFER_NOT_ACTIVE"), "{}", closed.stderr);
    assert_eq!(stack.ok(&["offer", "list"]).await?.lines(), ["no offers"]);
    let all = stack.ok(&["offer", "list", "--all"]).await?;
    assert!(line(&all, "offer starter disabled ").is_ok(), "{}", all.stdout);
    Ok(())
}

/// A lottery payout to user 3: an asset and two items under one correlation id, granted
/// once however often it is retried.
async fn lottery_bundle(stack: &Stack) -> anyhow::Result<()> {
    let grant = [
        "bundle",
        "grant",
        "--user",
        "3",
        "--asset",
        "red_shard:5",
        "--item",
        "coffee:2",
        "--business-type",
        "LOTTERY_REWARD",
        "--correlation",
        "draw-42",
    ];
    let granted = stack.ok(&grant).await?;
    let key = granted
        .line_starting("idempotency key: ")
        .and_then(|line| line.strip_prefix("idempotency key: "))
        .ok_or_else(|| anyhow::anyhow!("no key in {}", granted.stdout))?
        .to_owned();
    let head = line(&granted, "exchange ")?;
    assert!(
        head.contains(" completed  bundle LOTTERY_REWARD  correlation draw-42  granted 5 red_shard + 2 items  user:3"),
        "{head}"
    );
    let coffees = granted_items(&granted, "coffee");
    assert_eq!(coffees.len(), 2, "{}", granted.stdout);

    let retried = stack.ok(&[&grant[..], &["--idempotency-key", &key]].concat()).await?;
    assert!(line(&retried, "exchange ")?.ends_with(" (replayed)"), "{}", retried.stdout);
    assert_eq!(granted_items(&retried, "coffee"), coffees);

    let backpack = stack.ok(&as_user(&POOR, &["backpack"])).await?;
    assert!(
        backpack.lines().contains(&"asset red_shard  \"Red shard\"  available 5  frozen 0  total 5"),
        "{}",
        backpack.stdout
    );
    for coffee in &coffees {
        assert!(backpack.stdout.contains(&format!("item {coffee} coffee available")), "{}", backpack.stdout);
    }
    let history = stack.ok(&["history", "--user", "3", "--asset", "red_shard"]).await?;
    assert_eq!(history.lines().iter().filter(|line| line.contains("  LOTTERY_REWARD  by ")).count(), 1);

    let exchanges = stack.ok(&["exchanges", "--user", "3"]).await?;
    let heads: Vec<&str> = exchanges.lines().into_iter().filter(|line| line.starts_with("exchange ")).collect();
    assert_eq!(heads.len(), 2, "{}", exchanges.stdout);
    assert!(heads[0].contains(" bundle LOTTERY_REWARD "), "newest first: {}", exchanges.stdout);
    Ok(())
}

/// A revenue account the ledger does not know: every closing entry is refused, so a
/// purchase is undone after its grants — items revoked, hold released, stock returned
/// (docs/market.md, "Revenue account"); a name that is no system account stops the start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_revenue_account_undoes_every_purchase() -> anyhow::Result<()> {
    let stack = Stack::start_with_env(&[("ECONOMY_MARKET__OFFER_REVENUE_ACCOUNT", "SYSTEM_ELSEWHERE")]).await?;
    setup_catalog(&stack).await?;
    let define = ["offer", "define", "pack", "--name", "Pack", "--price", "POINTS:100", "--reward-item", "sword:2"];
    stack.ok(&[&define[..], &["--reward-asset", "red_shard:3", "--stock", "5"]].concat()).await?;
    let refused = stack.run(&as_user(&BUYER, &["offer", "buy", "pack"])).await?;
    assert!(refused.stderr.starts_with("error: FAILED_PRECONDITION ACCOUNT_NOT_FOUND"), "{}", refused.stderr);
    let exchanges = stack.ok(&as_user(&BUYER, &["exchanges"])).await?;
    assert!(
        line(&exchanges, "exchange ")?.contains(" failed  offer pack x1  failed ACCOUNT_NOT_FOUND  nothing charged "),
        "{}",
        exchanges.stdout
    );
    let revoked: Vec<&str> = exchanges.lines().into_iter().filter(|line| line.ends_with(" sword (revoked)")).collect();
    assert_eq!(revoked.len(), 2, "{}", exchanges.stdout);
    assert_eq!(stack.balances(2).await?, ["POINTS  available 1000  frozen 0  total 1000"]);
    let backpack = stack.ok(&as_user(&BUYER, &["backpack"])).await?;
    assert!(!backpack.stdout.contains(" sword "), "{}", backpack.stdout);
    let offer = stack.ok(&["offer", "get", "pack"]).await?;
    assert!(line(&offer, "offer ")?.contains("stock 5 (0 sold, 5 left)"), "{}", offer.stdout);
    assert_eq!(stack.stop().await?, Some(0));

    let refusal = Stack::start_with_env(&[("ECONOMY_MARKET__OFFER_REVENUE_ACCOUNT", "shop")]).await;
    let refusal = refusal.err().map(|error| format!("{error:#}")).unwrap_or_default();
    assert!(refusal.contains("market.offer_revenue_account"), "{refusal}");
    Ok(())
}

/// README.md, compiled in (cargo rebuilds the test when it changes).
const README: &str = include_str!("../README.md");
/// The README section whose `sh` blocks `readme_section_runs_literally` runs.
const README_SECTION: &str = "## Shop offers and reward bundles";

/// The lines of the `sh` blocks of `heading`'s section, continuation lines joined.
fn section_commands(readme: &str, heading: &str) -> anyhow::Result<Vec<String>> {
    let start = readme.find(&format!("\n{heading}\n")).ok_or_else(|| anyhow::anyhow!("README has no {heading}"))?;
    let section = &readme[start + 1..];
    let section = section[3..].find("\n## ").map_or(section, |end| &section[..end + 3]);
    let (mut lines, mut in_sh) = (Vec::<String>::new(), false);
    for line in section.lines() {
        if let Some(info) = line.trim_start().strip_prefix("```") {
            in_sh = !in_sh && info.trim() == "sh";
            continue;
        }
        match lines.last_mut().filter(|last| in_sh && last.ends_with('\\')) {
            Some(last) => {
                last.pop();
                last.push(' ');
                last.push_str(line.trim_start());
            }
            None if in_sh && !line.trim().is_empty() => lines.push(line.to_owned()),
            None => {}
        }
    }
    Ok(lines)
}

/// `line` split into the command and its trailing comment (a `#` after whitespace,
/// outside quotes).
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double, mut previous) = (false, false, ' ');
    for (index, character) in line.char_indices() {
        match character {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return (line[..index].trim_end(), Some(line[index + 1..].trim()));
            }
            _ => {}
        }
        previous = character;
    }
    (line.trim_end(), None)
}

/// Whether `text` matches `pattern` whole: `<…>` stands for one word, `...` for any text.
fn matches(pattern: &str, text: &str) -> bool {
    if let Some(rest) = pattern.strip_prefix("...") {
        return text.char_indices().map(|(index, _)| index).chain([text.len()]).any(|at| matches(rest, &text[at..]));
    }
    if pattern.starts_with('<')
        && let Some(end) = pattern.find('>')
    {
        let word = text.find(' ').unwrap_or(text.len());
        return word > 0 && matches(&pattern[end + 1..], &text[word..]);
    }
    match pattern.chars().next() {
        None => text.is_empty(),
        Some(first) => text.strip_prefix(first).is_some_and(|rest| matches(&pattern[first.len_utf8()..], rest)),
    }
}

/// Runs `command` through bash with the built `economy` first on PATH, against `stack`.
async fn run_line(stack: &Stack, command: &str) -> anyhow::Result<Run> {
    let binary = economy_e2e::economy_binary()?;
    let bin_dir = binary.parent().ok_or_else(|| anyhow::anyhow!("no directory of {}", binary.display()))?;
    let path = std::env::join_paths(
        std::iter::once(bin_dir.to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    let mut bash = tokio::process::Command::new("bash");
    for (name, _) in std::env::vars_os().filter(|(name, _)| name.to_string_lossy().starts_with("ECONOMY_")) {
        bash.env_remove(name);
    }
    bash.arg("-c")
        .arg(command)
        .env("PATH", path)
        .env("ECONOMY_ENDPOINT", &stack.endpoint)
        .env("ECONOMY_DATA_DIR", &stack.data_dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), bash.output()).await??;
    Ok(Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// Runs one README line and checks its `# … → PATTERN / PATTERN` promise: each pattern
/// matches a whole (trimmed) line of stdout, or, starting `error: `, of stderr with exit
/// status 1; any other line must exit 0.
async fn check_line(stack: &Stack, line: &str) -> anyhow::Result<()> {
    let (command, comment) = split_comment(line);
    let patterns: Vec<&str> = comment
        .and_then(|comment| comment.split_once("→ "))
        .map(|(_, out)| out.split(" / ").map(str::trim).collect())
        .unwrap_or_default();
    let fails = patterns.first().is_some_and(|first| first.starts_with("error: "));
    let run = run_line(stack, command).await?;
    let (code, output) = if fails { (Some(1), &run.stderr) } else { (Some(0), &run.stdout) };
    anyhow::ensure!(
        run.code == code,
        "`{command}` exited {:?}, not {code:?}\nstdout:\n{}\nstderr:\n{}",
        run.code,
        run.stdout,
        run.stderr
    );
    for pattern in patterns {
        anyhow::ensure!(
            output.lines().any(|line| matches(pattern, line.trim())),
            "`{command}`: no line matches `{pattern}` in:\n{output}"
        );
    }
    Ok(())
}

#[test]
fn patterns_match_whole_lines_with_words_and_any_text() {
    assert!(matches("exchange <id> completed ...", "exchange 01a2 completed  offer x"));
    assert!(matches("item <id> sword", "item 01a2 sword"));
    assert!(!matches("item <id> sword", "item 01a2 sword x"));
    assert!(!matches("item <id> sword", "item  sword"));
    assert!(matches("error: A B: ...", "error: A B: why"));
    assert_eq!(split_comment("economy x \"a # b\"  # c → d"), ("economy x \"a # b\"", Some("c → d")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_section_runs_literally() -> anyhow::Result<()> {
    let lines = section_commands(README, README_SECTION)?;
    anyhow::ensure!(lines.iter().any(|line| line.contains("economy bundle grant")), "{lines:?}");
    let stack = Stack::start().await?;
    // What the README's Quickstart defined before.
    setup_catalog(&stack).await?;
    for line in &lines {
        check_line(&stack, line).await?;
    }
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}
