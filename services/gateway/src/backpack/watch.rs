//! `BackpackService/WatchBackpack` (docs/gateway.md, "Watching a backpack"): one user's
//! ledger entries (`WatchEntries` on their account) and item events (`WatchItemEvents`
//! with them as owner), merged into one stream as they arrive. A task per stream reads
//! both upstream streams and writes into a bounded channel, waiting while it is full, so
//! a slow client slows the upstreams (flow control) instead of growing memory. Every
//! message carries a [`BackpackCursor`] covering both sources; the gateway sends its own
//! heartbeats while idle and ends the stream when either upstream ends or fails, or the
//! gateway shuts down.

use std::collections::BTreeMap;
use std::time::Duration;

use economy_kit::watch::Cursor;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use pb::watch_backpack_response::Kind;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use super::cursor::BackpackCursor;
use crate::error::GatewayError;
use crate::upstream::{Upstreams, upstream_error};

/// Messages buffered towards one client.
const BUFFER: usize = 64;

/// The responses of one backpack stream.
pub type BackpackStream = ReceiverStream<Result<pb::WatchBackpackResponse, Status>>;

/// Opens both upstream streams of `user_id` (from `start`, or from now) and spawns the
/// merge. Upstream refusals pass through; outages are `UNAVAILABLE` /
/// `UPSTREAM_UNAVAILABLE` naming the upstream.
pub async fn open(
    upstreams: Upstreams,
    user_id: i64,
    start: Option<BackpackCursor>,
    heartbeat: Duration,
    closing: CancellationToken,
) -> Result<BackpackStream, Status> {
    let Upstreams { mut ledger, mut items, .. } = upstreams;
    let account = ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(user_id)) };
    let entries = ledger::WatchEntriesRequest {
        start: start
            .as_ref()
            .map(|cursor| ledger::watch_entries_request::Start::AfterCursor(cursor.ledger.to_string())),
        account: Some(account),
        ..Default::default()
    };
    let events = items::WatchItemEventsRequest {
        start: start
            .as_ref()
            .map(|cursor| items::watch_item_events_request::Start::AfterCursor(cursor.items.to_string())),
        owner_user_id: user_id,
        ..Default::default()
    };
    let (entries, events) = tokio::join!(ledger.watch_entries(entries), items.watch_item_events(events));
    let mut entries = entries.map_err(upstream_error("ledger"))?.into_inner();
    let mut events = events.map_err(upstream_error("items"))?.into_inner();
    let (sender, receiver) = mpsc::channel(BUFFER);
    let cursor = match start {
        Some(cursor) => cursor,
        // From now each upstream opens with a heartbeat marking its start; so does this.
        None => {
            let (ledger, items) =
                tokio::try_join!(first_cursor(&mut entries, "ledger"), first_cursor(&mut events, "items"))?;
            let cursor = BackpackCursor { ledger, items };
            let opening =
                pb::WatchBackpackResponse { kind: Some(Kind::Heartbeat(heartbeat_now())), cursor: cursor.to_string() };
            let _ = sender.try_send(Ok(opening));
            cursor
        }
    };
    let merge = Merge { user_id, entries, events, cursor, sender, heartbeat };
    tokio::spawn(merge.run(closing));
    Ok(ReceiverStream::new(receiver))
}

/// The cursor of an upstream stream's first message, which for a stream from now is a
/// heartbeat marking where it starts (docs/streams.md).
async fn first_cursor<T: Cursored>(stream: &mut Streaming<T>, upstream: &'static str) -> Result<Cursor, Status> {
    let message = upstream_message(stream.message().await, upstream)?;
    if !message.is_heartbeat() {
        return Err(GatewayError::unavailable(upstream, "its stream did not open with a heartbeat").into());
    }
    parse_upstream(message.cursor(), upstream)
}

/// An upstream stream's message: a cursor, and whether it is a heartbeat.
trait Cursored {
    fn cursor(&self) -> &str;
    fn is_heartbeat(&self) -> bool;
}

impl Cursored for ledger::WatchEntriesResponse {
    fn cursor(&self) -> &str {
        &self.cursor
    }

    fn is_heartbeat(&self) -> bool {
        matches!(self.kind, Some(ledger::watch_entries_response::Kind::Heartbeat(_)))
    }
}

impl Cursored for items::WatchItemEventsResponse {
    fn cursor(&self) -> &str {
        &self.cursor
    }

    fn is_heartbeat(&self) -> bool {
        matches!(self.kind, Some(items::watch_item_events_response::Kind::Heartbeat(_)))
    }
}

struct Merge {
    user_id: i64,
    entries: Streaming<ledger::WatchEntriesResponse>,
    events: Streaming<items::WatchItemEventsResponse>,
    /// Both positions: everything up to them was delivered.
    cursor: BackpackCursor,
    sender: mpsc::Sender<Result<pb::WatchBackpackResponse, Status>>,
    heartbeat: Duration,
}

impl Merge {
    async fn run(mut self, closing: CancellationToken) {
        let outcome = tokio::select! {
            outcome = self.serve() => outcome,
            () = closing.cancelled() => Err(GatewayError::ShuttingDown.into()),
        };
        if let Err(status) = outcome {
            let _ = self.sender.try_send(Err(status));
        }
    }

    /// Relays until the client goes away (`Ok`) or an upstream ends or fails (`Err`).
    async fn serve(&mut self) -> Result<(), Status> {
        let mut next_heartbeat = Instant::now() + self.heartbeat;
        loop {
            // What to send, if anything (an upstream heartbeat only moves the cursor).
            let kind = tokio::select! {
                message = self.entries.message() => {
                    let message = upstream_message(message, "ledger")?;
                    self.cursor.ledger = parse_upstream(&message.cursor, "ledger")?;
                    match message.kind {
                        Some(ledger::watch_entries_response::Kind::Entry(entry)) => {
                            Some(Kind::BalanceChange(balance_change(self.user_id, entry)))
                        }
                        _ => None,
                    }
                }
                message = self.events.message() => {
                    let message = upstream_message(message, "items")?;
                    self.cursor.items = parse_upstream(&message.cursor, "items")?;
                    match message.kind {
                        Some(items::watch_item_events_response::Kind::Event(event)) => Some(Kind::ItemEvent(event)),
                        _ => None,
                    }
                }
                () = sleep_until(next_heartbeat) => {
                    next_heartbeat = Instant::now() + self.heartbeat;
                    Some(Kind::Heartbeat(heartbeat_now()))
                }
                () = self.sender.closed() => return Ok(()),
            };
            let Some(kind) = kind else {
                continue;
            };
            let message = pb::WatchBackpackResponse { kind: Some(kind), cursor: self.cursor.to_string() };
            next_heartbeat = Instant::now() + self.heartbeat;
            if self.sender.send(Ok(message)).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// The next message of an upstream stream; its end or failure ends the backpack stream
/// (the client reconnects with its last cursor).
fn upstream_message<T>(message: Result<Option<T>, Status>, upstream: &'static str) -> Result<T, Status> {
    match message {
        Ok(Some(message)) => Ok(message),
        Ok(None) => Err(GatewayError::unavailable(upstream, "its stream ended").into()),
        Err(status) => Err(upstream_error(upstream)(status)),
    }
}

fn parse_upstream(text: &str, upstream: &'static str) -> Result<Cursor, Status> {
    Cursor::parse(text).map_err(|_| GatewayError::unavailable(upstream, "it sent a malformed cursor").into())
}

/// The entry as the user sees it: per asset of their account, the movement of each part
/// of the balance and the balance after the entry.
fn balance_change(user_id: i64, entry: ledger::Transaction) -> pb::BalanceChange {
    let own = |account: &Option<ledger::AccountRef>| matches!(account, Some(ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(id)) }) if *id == user_id);
    let mut changes: BTreeMap<String, pb::AssetChange> = BTreeMap::new();
    for posting in entry.postings.iter().filter(|posting| own(&posting.account)) {
        let change = changes
            .entry(posting.asset_code.clone())
            .or_insert_with(|| pb::AssetChange { asset_code: posting.asset_code.clone(), ..Default::default() });
        match posting.bucket() {
            ledger::Bucket::Frozen => change.frozen_delta += posting.amount,
            _ => change.available_delta += posting.amount,
        }
    }
    for balance in entry.resulting_balances.into_iter().filter(|balance| own(&balance.account)) {
        if let Some(change) = changes.get_mut(&balance.asset_code) {
            change.balance = Some(balance);
        }
    }
    pb::BalanceChange {
        entry_id: entry.id,
        business_type: entry.business_type,
        correlation_id: entry.correlation_id,
        created_at: entry.created_at,
        changes: changes.into_values().collect(),
    }
}

fn heartbeat_now() -> pb::BackpackHeartbeat {
    pb::BackpackHeartbeat { sent_at: Some(economy_kit::time::to_timestamp(economy_kit::time::now_millis())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> Option<ledger::AccountRef> {
        Some(ledger::AccountRef { account: Some(ledger::account_ref::Account::UserId(id)) })
    }

    fn posting(account: i64, asset: &str, amount: i64, bucket: ledger::Bucket) -> ledger::Posting {
        ledger::Posting {
            account: user(account),
            asset_code: asset.into(),
            amount,
            bucket: bucket.into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_balance_change_sums_the_users_legs_per_asset_with_the_balance_after() {
        use ledger::Bucket::{Available, Frozen};
        let entry = ledger::Transaction {
            id: "e".into(),
            business_type: "HOLD_SETTLE".into(),
            postings: vec![
                posting(2, "POINTS", -500, Frozen),
                posting(3, "POINTS", 500, Available),
                posting(2, "POINTS", 100, Available),
                posting(2, "red_shard", 5, Available),
            ],
            resulting_balances: vec![
                ledger::Balance {
                    account: user(2),
                    asset_code: "POINTS".into(),
                    available: 700,
                    frozen: 0,
                    total: 700,
                },
                ledger::Balance { account: user(2), asset_code: "red_shard".into(), available: 5, frozen: 0, total: 5 },
                ledger::Balance {
                    account: user(3),
                    asset_code: "POINTS".into(),
                    available: 900,
                    frozen: 0,
                    total: 900,
                },
            ],
            ..Default::default()
        };
        let change = balance_change(2, entry);
        let summary: Vec<_> = change
            .changes
            .iter()
            .map(|change| {
                let total = change.balance.as_ref().map(|balance| balance.total);
                (change.asset_code.as_str(), change.available_delta, change.frozen_delta, total)
            })
            .collect();
        assert_eq!(summary, [("POINTS", 100, -500, Some(700)), ("red_shard", 5, 0, Some(5))]);
        assert_eq!(change.entry_id, "e");
    }
}
