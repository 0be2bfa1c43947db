//! The market end to end against the real `economy` binary, through the gateway: a trade
//! of shards for diamonds and a trade of an item, with exact balances, and a ledger that
//! still reconciles.

use economy_e2e::{Run, Stack};

fn id_after(run: &Run, prefix: &str) -> anyhow::Result<String> {
    let line = run.line_starting(prefix).ok_or_else(|| anyhow::anyhow!("no `{prefix}` line in:\n{}", run.stdout))?;
    line.split_whitespace().nth(1).map(str::to_owned).ok_or_else(|| anyhow::anyhow!("bad line {line}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trade_shards_for_diamonds_and_an_item() -> anyhow::Result<()> {
    let stack = Stack::start().await?;
    for (code, kind) in [("DIAMOND", "currency"), ("red_shard", "fragment")] {
        stack.ok(&["asset", "define", code, "--name", code, "--kind", kind]).await?;
    }
    stack.ok(&["adjust", "--user", "2", "--asset", "red_shard", "--amount", "100", "--reason", "loot"]).await?;
    stack.ok(&["adjust", "--user", "3", "--asset", "DIAMOND", "--amount", "1000", "--reason", "top-up"]).await?;
    let (seller, buyer) = (["--user-id", "2", "--role", "0"], ["--user-id", "3", "--role", "0"]);

    let listed = stack
        .ok(&[&seller[..], &["market", "sell", "--asset", "red_shard:40", "--price", "DIAMOND:139"]].concat())
        .await?;
    let listing = id_after(&listed, "listing ")?;
    assert!(listed.stdout.contains(&format!("listing {listing} on_sale 40 red_shard for 139 DIAMOND  seller user:2")));
    let browse = stack.ok(&["market", "browse", "--asset", "red_shard", "--sort", "cheapest"]).await?;
    assert_eq!(browse.lines().len(), 1, "{}", browse.stdout);
    let bought = stack.ok(&[&buyer[..], &["market", "buy", &listing]].concat()).await?;
    assert!(
        bought.stdout.contains("completed  price 139 DIAMOND  fee 6  seller gets 133  buyer user:3  seller user:2"),
        "{}",
        bought.stdout
    );
    assert_eq!(
        stack.balances(2).await?,
        ["DIAMOND  available 133  frozen 0  total 133", "red_shard  available 60  frozen 0  total 60"]
    );
    assert_eq!(
        stack.balances(3).await?,
        ["DIAMOND  available 861  frozen 0  total 861", "red_shard  available 40  frozen 0  total 40"]
    );
    let fee = stack.ok(&["balance", "--system", "SYSTEM_PLATFORM_FEE", "--asset", "DIAMOND"]).await?;
    assert_eq!(fee.lines(), ["DIAMOND  available 6  frozen 0  total 6"]);

    stack.ok(&["template", "define", "sword", "--name", "Sword", "--kind", "equipment"]).await?;
    let granted = stack.ok(&["item", "grant", "--user", "2", "--template", "sword"]).await?;
    let item = id_after(&granted, "item ")?;
    let listed =
        stack.ok(&[&seller[..], &["market", "sell", "--item", &item, "--price", "DIAMOND:200"]].concat()).await?;
    let listing = id_after(&listed, "listing ")?;
    let own = stack.run(&[&seller[..], &["market", "buy", &listing]].concat()).await?;
    assert!(own.stderr.starts_with("error: FAILED_PRECONDITION OWN_LISTING"), "{}", own.stderr);
    stack.ok(&[&buyer[..], &["market", "buy", &listing]].concat()).await?;
    let sword = stack.ok(&["item", "show", &item]).await?;
    assert!(sword.stdout.contains(&format!("item {item} sword available  owner user:3")), "{}", sword.stdout);
    let trades = stack.ok(&[&seller[..], &["market", "trades"]].concat()).await?;
    assert_eq!(trades.lines().len(), 2, "{}", trades.stdout);
    assert_eq!(stack.balances(3).await?[0], "DIAMOND  available 661  frozen 0  total 661");

    let backpack = stack.ok(&[&buyer[..], &["backpack"]].concat()).await?;
    assert_eq!(
        backpack.lines()[..3],
        [
            "backpack of user:3",
            "asset DIAMOND  \"DIAMOND\"  available 661  frozen 0  total 661",
            "asset red_shard  \"red_shard\"  available 40  frozen 0  total 40",
        ]
    );
    assert!(backpack.lines()[3].starts_with(&format!("item {item} sword available")), "{}", backpack.stdout);
    let check = stack.ok(&["check"]).await?;
    assert!(check.stdout.starts_with("services are consistent ("), "{}", check.stdout);

    let reconcile = stack.ok(&["reconcile"]).await?;
    assert!(reconcile.stdout.starts_with("ledger is consistent ("), "{}", reconcile.stdout);
    assert_eq!(stack.stop().await?, Some(0));
    Ok(())
}
