//! The stream consumers of `watch-lag`: one task per stream reads it and notes each entry
//! with its receipt time; [`Consumers::finish`] waits for them to catch up with the
//! writes, closes the streams and turns what they saw into a [`StreamReport`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use economy_kit::identity::roles;
use economy_proto::gateway::v1::{WatchBackpackRequest, WatchBackpackResponse, watch_backpack_response};
use economy_proto::ledger::v1::{WatchEntriesRequest, WatchEntriesResponse, watch_entries_response};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Streaming;

use super::super::setup::SETUP_ADMIN;
use crate::clients::{self, Auth, failure_reason};
use crate::lag::{ConsumerLag, Delivery, DeliveryCheck, StreamReport, Window, system_time};
use crate::stack::Stack;

/// The admin's stream of every entry.
const ADMIN_KIND: &str = "WatchEntries, admin, every entry";
/// The streams of each writer's user.
const BACKPACK_KIND: &str = "WatchBackpack, one per writer's user";
/// How often the drain looks at the consumers' progress.
const DRAIN_POLL: Duration = Duration::from_millis(20);
/// How long the streams stay open once caught up, so a late repeat is seen.
const GRACE: Duration = Duration::from_millis(250);

/// What one stream message is to a consumer.
enum Seen {
    /// A journal entry: its id and `created_at`.
    Entry(String, Option<SystemTime>),
    /// A heartbeat.
    Heartbeat,
    /// Anything else (an item event).
    Other,
}

/// A stream response the consumers understand.
trait Watched: Send + 'static {
    fn seen(self) -> Seen;
}

impl Watched for WatchEntriesResponse {
    fn seen(self) -> Seen {
        match self.kind {
            Some(watch_entries_response::Kind::Entry(entry)) => {
                Seen::Entry(entry.id, entry.created_at.as_ref().and_then(system_time))
            }
            Some(watch_entries_response::Kind::Heartbeat(_)) => Seen::Heartbeat,
            None => Seen::Other,
        }
    }
}

impl Watched for WatchBackpackResponse {
    fn seen(self) -> Seen {
        match self.kind {
            Some(watch_backpack_response::Kind::BalanceChange(change)) => {
                Seen::Entry(change.entry_id, change.created_at.as_ref().and_then(system_time))
            }
            Some(watch_backpack_response::Kind::Heartbeat(_)) => Seen::Heartbeat,
            Some(watch_backpack_response::Kind::ItemEvent(_)) | None => Seen::Other,
        }
    }
}

/// What a consumer task has seen so far.
#[derive(Debug, Default)]
struct Received {
    deliveries: Vec<Delivery>,
    /// Why the stream ended, once it has.
    ended: Option<String>,
}

type Shared = Arc<Mutex<Received>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Received> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One open stream and the task reading it (aborted, closing the stream, on drop).
struct Feed {
    seen: Shared,
    task: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Feed {
    /// Waits for the stream's first message, the heartbeat that marks a stream from now,
    /// then reads the rest in a task.
    async fn follow<T: Watched>(mut stream: Streaming<T>, what: &str) -> anyhow::Result<Self> {
        match stream.message().await.map(|first| first.map(Watched::seen)) {
            Ok(Some(Seen::Heartbeat)) => {}
            Ok(Some(_)) => anyhow::bail!("{what}: the first message of a stream from now is not a heartbeat"),
            Ok(None) => anyhow::bail!("{what}: the stream ended before its first message"),
            Err(status) => anyhow::bail!("{what}: {}: {}", failure_reason(&status), status.message()),
        }
        let seen = Shared::default();
        let task = tokio::spawn(read(stream, seen.clone()));
        Ok(Self { seen, task })
    }

    fn delivered(&self) -> usize {
        lock(&self.seen).deliveries.len()
    }

    fn ended(&self) -> Option<String> {
        lock(&self.seen).ended.clone()
    }

    /// Stops reading and returns what was delivered.
    fn close(self) -> Vec<Delivery> {
        self.task.abort();
        std::mem::take(&mut lock(&self.seen).deliveries)
    }
}

/// Reads `stream` to its end, noting every entry with the moment it was read.
async fn read<T: Watched>(mut stream: Streaming<T>, seen: Shared) {
    let ended = loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let received = SystemTime::now();
                if let Seen::Entry(entry_id, created_at) = message.seen() {
                    lock(&seen).deliveries.push(Delivery { entry_id, created_at, received });
                }
            }
            Ok(None) => break "ended with OK".to_owned(),
            Err(status) => break format!("{}: {}", failure_reason(&status), status.message()),
        }
    };
    lock(&seen).ended = Some(ended);
}

/// Every consumer of a run: the admin's stream and one backpack stream per writer, in
/// writer order.
pub(super) struct Consumers {
    admin: Feed,
    backpacks: Vec<Feed>,
}

impl Consumers {
    /// Opens, through the gateway and from now, the admin's `WatchEntries` and a
    /// `WatchBackpack` as each user of `users`, over `connections` HTTP/2 connections of
    /// their own (the admin's on a separate one).
    pub(super) async fn open(stack: &Stack, users: &[i64], connections: usize) -> anyhow::Result<Self> {
        let channel = clients::connect(&stack.gateway_url).await?;
        let mut ledger = clients::ledger(channel, Auth::Bearer(stack.bearer(SETUP_ADMIN, roles::ADMIN)?));
        let stream = ledger.watch_entries(WatchEntriesRequest::default()).await;
        let admin = Feed::follow(opened(stream, ADMIN_KIND)?, ADMIN_KIND).await?;
        let channels = clients::connect_many(&stack.gateway_url, connections).await?;
        let mut backpacks = Vec::with_capacity(users.len());
        for (index, user) in users.iter().enumerate() {
            let auth = Auth::Bearer(stack.bearer(*user, roles::USER)?);
            let mut client = clients::backpack(channels[index % channels.len()].clone(), auth);
            let stream = client.watch_backpack(WatchBackpackRequest::default()).await;
            let what = format!("{BACKPACK_KIND} of user {user}");
            backpacks.push(Feed::follow(opened(stream, &what)?, &what).await?);
        }
        Ok(Self { admin, backpacks })
    }

    /// Waits up to `timeout` for every stream to deliver as many entries as were
    /// written for it (`written[i]`: writer `i`'s entry ids), keeps them open a moment
    /// longer, closes them and reports the lags of the entries created in `window` and
    /// the exactly-once check.
    pub(super) async fn finish(
        self,
        written: &[Vec<String>],
        window: Window,
        timeout: Duration,
    ) -> anyhow::Result<StreamReport> {
        let drain = self.drain(written, timeout).await;
        tokio::time::sleep(GRACE).await;
        let ended = self.ended();
        let admin = self.admin.close();
        let backpacks: Vec<Vec<Delivery>> = self.backpacks.into_iter().map(Feed::close).collect();
        let lags = vec![
            ConsumerLag::of(BACKPACK_KIND, &backpacks, window)?,
            ConsumerLag::of(ADMIN_KIND, std::slice::from_ref(&admin), window)?,
        ];
        let everything = written.iter().flatten().cloned().collect();
        let backpacks: Vec<_> = written.iter().cloned().zip(backpacks).collect();
        let checks =
            vec![DeliveryCheck::of(BACKPACK_KIND, &backpacks), DeliveryCheck::of(ADMIN_KIND, &[(everything, admin)])];
        Ok(StreamReport { lags, checks, drain, ended })
    }

    /// How long the streams took to deliver what was written (`timeout` at most).
    async fn drain(&self, written: &[Vec<String>], timeout: Duration) -> Duration {
        let start = Instant::now();
        let total: usize = written.iter().map(Vec::len).sum();
        let caught_up = |feed: &Feed, expected: usize| feed.delivered() >= expected || feed.ended().is_some();
        while start.elapsed() < timeout {
            let backpacks = self.backpacks.iter().zip(written).all(|(feed, ids)| caught_up(feed, ids.len()));
            if backpacks && caught_up(&self.admin, total) {
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        start.elapsed().min(timeout)
    }

    /// The streams that have ended, by kind and number, with why.
    fn ended(&self) -> BTreeMap<String, String> {
        let admin = std::iter::once((format!("{ADMIN_KIND} #0"), &self.admin));
        let backpacks =
            self.backpacks.iter().enumerate().map(|(index, feed)| (format!("{BACKPACK_KIND} #{index}"), feed));
        admin.chain(backpacks).filter_map(|(name, feed)| feed.ended().map(|why| (name, why))).collect()
    }
}

/// The stream of an answered call, or why it was refused.
fn opened<T>(answer: Result<tonic::Response<Streaming<T>>, tonic::Status>, what: &str) -> anyhow::Result<Streaming<T>> {
    answer
        .map(tonic::Response::into_inner)
        .map_err(|status| anyhow::anyhow!("{what}: {}: {}", failure_reason(&status), status.message()))
}
