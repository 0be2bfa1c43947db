//! `economy watch`: a user's backpack changes as they happen (`BackpackService/
//! WatchBackpack`, docs/gateway.md, "Watching a backpack").

use std::process::ExitCode;

use clap::Args;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use pb::watch_backpack_response::Kind;

use crate::commands::gateway::Authed;
use crate::output::{enum_name, timestamp};

/// `economy watch`.
#[derive(Debug, Args)]
pub struct Watch {
    /// Whose backpack (default: `--user-id`; others need the admin role).
    #[arg(long, default_value_t = 0)]
    pub user: i64,
    /// Resume right after this cursor (printed with every change); default: from now.
    #[arg(long, default_value = "")]
    pub after: String,
    /// Stop after this many changes (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
}

/// Runs `economy watch`: a first `watching` line once the stream is open, then
/// one line per balance change or item event, each ending with the cursor to resume
/// after it; heartbeats print nothing. `--count` counts changes only.
pub async fn watch(channel: Authed, args: Watch) -> anyhow::Result<ExitCode> {
    let mut client = pb::backpack_service_client::BackpackServiceClient::new(channel);
    let request = pb::WatchBackpackRequest { user_id: args.user, after_cursor: args.after };
    let mut stream = client.watch_backpack(request).await?.into_inner();
    // Open: both sources' start is fixed, whatever commits from now on is printed.
    println!("watching");
    let mut remaining = args.count;
    while remaining != Some(0) {
        let Some(message) = stream.message().await? else {
            break;
        };
        let line = match message.kind {
            Some(Kind::BalanceChange(change)) => balance_change(&change),
            Some(Kind::ItemEvent(event)) => item_event(&event),
            Some(Kind::Heartbeat(_)) | None => continue,
        };
        println!("{line}  cursor {}", message.cursor);
        remaining = remaining.map(|count| count.saturating_sub(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `<time>  <signed change> <asset> -> <available> available, <frozen> frozen  <business type>`
/// per asset, joined by `; `.
fn balance_change(change: &pb::BalanceChange) -> String {
    let assets: Vec<String> = change
        .changes
        .iter()
        .map(|asset| {
            let moved = match (asset.available_delta, asset.frozen_delta) {
                (available, 0) => format!("{available:+}"),
                (0, frozen) => format!("{frozen:+} frozen"),
                (available, frozen) => format!("{available:+} available {frozen:+} frozen"),
            };
            let (available, frozen) =
                asset.balance.as_ref().map_or((0, 0), |balance| (balance.available, balance.frozen));
            format!("{moved} {} -> {available} available, {frozen} frozen", asset.asset_code)
        })
        .collect();
    format!(
        "{}  {}  {}  entry {}",
        timestamp(change.created_at.as_ref()),
        assets.join("; "),
        change.business_type,
        change.entry_id
    )
}

/// `<time>  item <instance id> <event>  [from user:A ]to user:B`.
fn item_event(event: &items::ItemEvent) -> String {
    let kind = enum_name(event.r#type().as_str_name(), "ITEM_EVENT_TYPE_");
    let from = match event.from_owner_user_id {
        0 => String::new(),
        owner => format!("from user:{owner} "),
    };
    format!(
        "{}  item {} {kind}  {from}to user:{}",
        timestamp(event.created_at.as_ref()),
        event.item_instance_id,
        event.to_owner_user_id
    )
}

#[cfg(test)]
mod tests {
    use economy_proto::ledger::v1 as ledger;

    use super::*;

    #[test]
    fn a_balance_change_reads_as_the_change_and_the_balance_after() {
        let change = pb::BalanceChange {
            entry_id: "e1".into(),
            business_type: "ADMIN_ADJUST".into(),
            changes: vec![pb::AssetChange {
                asset_code: "POINTS".into(),
                available_delta: 60,
                frozen_delta: 0,
                balance: Some(ledger::Balance { available: 700, frozen: 0, total: 700, ..Default::default() }),
            }],
            ..Default::default()
        };
        let line = balance_change(&change);
        assert!(line.ends_with("+60 POINTS -> 700 available, 0 frozen  ADMIN_ADJUST  entry e1"), "{line}");
    }
}
