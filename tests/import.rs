//! `economy import` end to end (docs/import.md): the sample legacy economy of
//! `tests/data/import` (written by its `generate.py`) imported into `economy up` through
//! the real binary. It imports exactly (clean report, balances and orders as in the
//! files, its pending codes redeem), a second run changes nothing, a dry run writes
//! nothing, bad rows are named by file and line and leave nothing behind, and an
//! interrupted import completes when run again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use economy_e2e::Stack;

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/import/sample")
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

fn rows(dir: &Path, file: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(dir.join(file))?;
    Ok(text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?)
}

/// Per asset, the sum of the file's balances.
fn file_totals(dir: &Path) -> anyhow::Result<BTreeMap<String, i64>> {
    let mut totals = BTreeMap::new();
    for row in rows(dir, "balances.jsonl")? {
        *totals.entry(row["asset_code"].as_str().unwrap_or_default().to_owned()).or_default() +=
            row["amount"].as_i64().unwrap_or_default();
    }
    Ok(totals)
}

/// `ASSET -> total` of `economy balance --system SYSTEM_ISSUANCE`, negated: what was issued.
async fn issued(stack: &Stack) -> anyhow::Result<BTreeMap<String, i64>> {
    let run = stack.ok(&["balance", "--system", "SYSTEM_ISSUANCE"]).await?;
    let mut issued = BTreeMap::new();
    for line in run.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [asset, "available", _, "frozen", _, "total", total] = fields.as_slice() {
            issued.insert((*asset).to_owned(), -total.parse::<i64>()?);
        }
    }
    Ok(issued)
}

/// `file -> (created, unchanged)` of an import's output.
fn counts(stdout: &str) -> BTreeMap<String, (u64, u64)> {
    let mut counts = BTreeMap::new();
    for line in stdout.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [file, created, unchanged] = fields.as_slice() {
            let number = |field: &str, name: &str| field.strip_prefix(name).and_then(|n| n.parse().ok());
            if let (Some(c), Some(u)) = (number(created, "created="), number(unchanged, "unchanged=")) {
                counts.insert((*file).to_owned(), (c, u));
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_imports_exactly_and_a_second_run_changes_nothing() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let sample = sample();
    let dry = stack.ok(&["import", path(&sample), "--dry-run"]).await?;
    assert!(dry.stdout.contains("import: clean"), "{}", dry.stdout);
    assert!(issued(&stack).await?.is_empty(), "a dry run writes nothing");

    let first = stack.ok(&["import", path(&sample)]).await?;
    assert!(first.stdout.lines().any(|line| line == "import: clean"), "{}", first.stdout);
    let positive = rows(&sample, "balances.jsonl")?.iter().filter(|row| row["amount"].as_i64() > Some(0)).count();
    let created = counts(&first.stdout);
    assert_eq!(created.get("balances.jsonl"), Some(&(positive as u64, 0)), "{}", first.stdout);
    assert_eq!(created.get("items.jsonl").map(|c| c.0), Some(rows(&sample, "items.jsonl")?.len() as u64));
    assert_eq!(created.get("orders.jsonl").map(|c| c.0), Some(rows(&sample, "orders.jsonl")?.len() as u64));
    let expected: BTreeMap<_, _> = file_totals(&sample)?.into_iter().filter(|(_, total)| *total != 0).collect();
    assert_eq!(issued(&stack).await?, expected, "the ledger issued exactly the files' balances");

    // A pending order's plaintext code redeems through the normal FulfillOrder.
    let pending = rows(&sample, "orders.jsonl")?
        .into_iter()
        .find(|row| row["status"] == "pending" && row["code"].is_string())
        .expect("a pending order with a plaintext code");
    let code = pending["code"].as_str().unwrap_or_default();
    let fulfilled = stack.ok(&["--role", "50", "--user-id", "9000", "redeem", "fulfill", code]).await?;
    assert!(fulfilled.stdout.contains("fulfilled"), "{}", fulfilled.stdout);

    let check = stack.ok(&["check"]).await?;
    assert!(check.stdout.starts_with("services are consistent ("), "{}", check.stdout);
    let reconcile = stack.ok(&["reconcile"]).await?;
    assert!(reconcile.stdout.starts_with("ledger is consistent ("), "{}", reconcile.stdout);

    let second = stack.ok(&["import", path(&sample)]).await?;
    assert!(second.stdout.lines().any(|line| line == "import: clean"), "{}", second.stdout);
    for (file, (created, _)) in counts(&second.stdout) {
        assert_eq!(created, 0, "{file} changed on the second run: {}", second.stdout);
    }
    assert_eq!(issued(&stack).await?, expected);
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}

/// A fresh directory under the system's temp dir with `manifest.json`.
fn import_dir(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("economy-import-{name}-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(sample().join("manifest.json"), dir.join("manifest.json"))?;
    Ok(dir)
}

fn write(dir: &Path, file: &str, lines: &[&str]) -> anyhow::Result<()> {
    Ok(std::fs::write(dir.join(file), lines.iter().map(|line| format!("{line}\n")).collect::<String>())?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_named_and_leave_nothing_behind() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let dir = import_dir("bad")?;
    write(&dir, "assets.jsonl", &[r#"{"code":"POINTS","display_name":"Points","kind":"currency"}"#])?;
    write(
        &dir,
        "item_templates.jsonl",
        &[r#"{"code":"voucher","display_name":"Voucher","kind":"voucher","redeemable":true}"#],
    )?;
    write(
        &dir,
        "balances.jsonl",
        &[
            r#"{"external_id":"b1","user_id":21,"asset_code":"POINTS","amount":100}"#,
            r#"{"external_id":"b2","user_id":22,"asset_code":"NOPE","amount":5}"#,
            r#"{"external_id":"b1","user_id":23,"asset_code":"POINTS","amount":7}"#,
            r#"{"external_id":"b4","user_id":24,"asset_code":"POINTS","amount":"lots"}"#,
        ],
    )?;
    write(
        &dir,
        "items.jsonl",
        &[
            r#"{"external_id":"i1","template_code":"voucher","owner_user_id":21,"status":"locked_for_redemption","granted_at":"2025-01-01T00:00:00Z"}"#,
            r#"{"external_id":"i2","template_code":"missing","owner_user_id":22,"status":"available","granted_at":"2025-01-01T00:00:00Z"}"#,
            r#"{"external_id":"i3","template_code":"voucher","owner_user_id":22,"status":"locked_for_redemption","granted_at":"2025-01-01T00:00:00Z"}"#,
        ],
    )?;
    write(
        &dir,
        "orders.jsonl",
        &[
            r#"{"external_id":"o1","item_external_id":"i1","owner_user_id":21,"status":"pending","code":"ABCD-EFGH-JK23","created_at":"2025-01-01T00:00:00Z","expires_at":"2036-01-01T00:00:00Z"}"#,
        ],
    )?;
    let run = stack.run(&["import", path(&dir)]).await?;
    assert_eq!(run.code, Some(3), "{}\n{}", run.stdout, run.stderr);
    for place in
        ["balances.jsonl:2: ", "balances.jsonl:3: ", "balances.jsonl:4: ", "items.jsonl:2: ", "items.jsonl:3: "]
    {
        assert!(run.stdout.contains(place), "{place} missing in\n{}", run.stdout);
    }
    assert!(run.stdout.contains("balances.jsonl:2: ASSET_NOT_FOUND"), "{}", run.stdout);
    assert!(run.stdout.contains("items.jsonl:2: TEMPLATE_NOT_FOUND"), "{}", run.stdout);
    assert!(!run.stdout.contains("ABCD") && !run.stderr.contains("ABCD"), "a code is never printed");
    assert_eq!(issued(&stack).await?, BTreeMap::from([("POINTS".to_owned(), 100)]), "only the good balance");
    let owner = stack.ok(&["item", "list", "--user", "22"]).await?;
    assert!(!owner.stdout.contains("item "), "user 22's rows were all refused: {}", owner.stdout);
    let good = stack.ok(&["item", "list", "--user", "21"]).await?;
    assert!(good.stdout.contains("locked"), "the good item is locked by its order: {}", good.stdout);
    assert_eq!(stack.stop().await?, Some(0));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// The first `share` of each line of `file` (all of it for the catalogs), without the
/// items locked by an order (their orders come later).
fn prefix(source: &Path, dir: &Path, file: &str, share: f64) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(source.join(file))?;
    let lines: Vec<&str> = text.lines().collect();
    let keep = (lines.len() as f64 * share) as usize;
    let kept: Vec<&str> = lines.into_iter().take(keep).filter(|line| !line.contains("locked_for_redemption")).collect();
    write(dir, file, &kept)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_completes_when_run_again() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    let sample = sample();
    let dir = import_dir("prefix")?;
    for (file, share) in
        [("assets.jsonl", 1.0), ("item_templates.jsonl", 1.0), ("balances.jsonl", 0.5), ("items.jsonl", 0.5)]
    {
        prefix(&sample, &dir, file, share)?;
    }
    let partial = stack.ok(&["import", path(&dir)]).await?;
    assert!(partial.stdout.lines().any(|line| line == "import: clean"), "{}", partial.stdout);
    // And one run stopped at an arbitrary point.
    let mut killed = stack.spawn(&["import", path(&sample)])?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    killed.start_kill()?;
    killed.wait().await?;

    let run = stack.ok(&["import", path(&sample)]).await?;
    assert!(run.stdout.lines().any(|line| line == "import: clean"), "{}", run.stdout);
    let counts = counts(&run.stdout);
    let (created, unchanged) = counts.get("balances.jsonl").copied().unwrap_or_default();
    assert!(unchanged > 0 && created + unchanged > 0, "{}", run.stdout);
    let expected: BTreeMap<_, _> = file_totals(&sample)?.into_iter().filter(|(_, total)| *total != 0).collect();
    assert_eq!(issued(&stack).await?, expected);
    let reconcile = stack.ok(&["reconcile"]).await?;
    assert!(reconcile.stdout.starts_with("ledger is consistent ("), "{}", reconcile.stdout);
    assert_eq!(stack.stop().await?, Some(0));
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
