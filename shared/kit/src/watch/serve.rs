//! Serving one stream (docs/streams.md): a task reads the backlog in pages below the
//! horizon, then waits for a wake-up ([`super::Appended`]; a slow re-read as a safety
//! net) and sends heartbeats while idle. It writes into a bounded channel and waits while
//! the channel is full, so a slow client holds at most one page plus the channel in
//! memory. It ends when the client goes away or the shutdown token fires.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::{Committed, Cursor, StartPoint};
use crate::error::Violations;

/// Rows read per page.
const PAGE: i64 = 100;
/// Messages buffered towards one client.
const BUFFER: usize = 64;
/// Re-read this often even without a wake-up (a notification lost while the PostgreSQL
/// listener reconnected only delays delivery).
const FALLBACK_REREAD: Duration = Duration::from_secs(5);

/// The responses of one stream.
pub type EventStream<R> = ReceiverStream<Result<R, Status>>;

/// Settings of every stream of a service.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// A heartbeat is sent after this long without a message.
    pub heartbeat: Duration,
    /// Streams end when it fires.
    pub shutdown: CancellationToken,
}

/// Where a stream starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Right after this cursor.
    After(Cursor),
    /// Before the first row ever recorded.
    Beginning,
    /// After everything committed so far.
    Now,
}

impl Start {
    /// From a request's `oneof start { string after_cursor; bool from_beginning; }`:
    /// after the cursor, from the beginning (the flag must be true), or from now when
    /// neither is set. `None` after adding the field violation to `violations`.
    pub fn from_request(
        violations: &mut Violations,
        after_cursor: Option<&str>,
        from_beginning: Option<bool>,
    ) -> Option<Self> {
        match (after_cursor, from_beginning) {
            (Some(text), _) => match Cursor::parse(text) {
                Ok(cursor) => Some(Self::After(cursor)),
                Err(description) => {
                    violations.add("after_cursor", description);
                    None
                }
            },
            (None, Some(true)) => Some(Self::Beginning),
            (None, Some(false)) => {
                violations.add("from_beginning", "must be true when set");
                None
            }
            (None, None) => Some(Self::Now),
        }
    }
}

/// What a stream reads and how it answers: a service's store and filter.
pub trait Source: Send + 'static {
    /// One row of the stream (an entry, an event).
    type Item: Send;
    /// The RPC's response message.
    type Response: Send + 'static;

    /// The horizon now (`StreamTable::horizon`).
    fn horizon(&self) -> impl Future<Output = Result<i64, Status>> + Send;

    /// The start of a stream "from now" (`StreamTable::start_point`).
    fn start_point(&self) -> impl Future<Output = Result<StartPoint, Status>> + Send;

    /// Up to `limit` matching rows strictly after `after` and below `horizon`, in stream
    /// order, with their cursors; without those visible in `committed`.
    fn page(
        &self,
        after: &Cursor,
        horizon: i64,
        committed: Option<&Committed>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Cursor, Self::Item)>, Status>> + Send;

    /// A message carrying `item`, resumable at `cursor`.
    fn event(item: Self::Item, cursor: String) -> Self::Response;

    /// A heartbeat sent at `sent_at`, resumable at `cursor`.
    fn heartbeat(sent_at: prost_types::Timestamp, cursor: String) -> Self::Response;
}

/// Starts a stream of `source` from `start`, woken by `wake` (`Appended::subscribe`).
pub async fn open<S: Source>(
    source: S,
    start: Start,
    wake: watch::Receiver<u64>,
    options: &WatchOptions,
) -> Result<EventStream<S::Response>, Status> {
    let from_now = start == Start::Now;
    let (cursor, committed) = match start {
        Start::After(cursor) => (cursor, None),
        Start::Beginning => (Cursor::start(), None),
        Start::Now => {
            let start = source.start_point().await?;
            (Cursor::before(start.horizon), start.committed)
        }
    };
    let (sender, receiver) = mpsc::channel(BUFFER);
    if from_now {
        // The client learns where "now" was before anything else arrives.
        let _ = sender.try_send(Ok(S::heartbeat(now(), cursor.to_string())));
    }
    let heartbeat = options.heartbeat;
    let next_heartbeat = Instant::now() + heartbeat;
    let watcher = Watcher { source, cursor, committed, sender, heartbeat, next_heartbeat };
    tokio::spawn(watcher.run(wake, options.shutdown.clone()));
    Ok(ReceiverStream::new(receiver))
}

fn now() -> prost_types::Timestamp {
    crate::time::to_timestamp(crate::time::now_millis())
}

/// Whether the client still listens.
enum Delivery {
    /// Caught up with the horizon (the page was not full).
    CaughtUp,
    /// More rows may follow right away.
    More,
    /// The client went away.
    Gone,
}

struct Watcher<S: Source> {
    source: S,
    /// Everything up to here was delivered (or did not match).
    cursor: Cursor,
    /// A stream from now on PostgreSQL: the rows committed before it started, left out
    /// until the cursor passes the snapshot's `xmax`.
    committed: Option<Committed>,
    sender: mpsc::Sender<Result<S::Response, Status>>,
    heartbeat: Duration,
    /// When to send a heartbeat unless a message goes out before.
    next_heartbeat: Instant,
}

/// What ended a wait.
enum Wake {
    /// Rows may have committed: read again.
    Read,
    /// Idle for a heartbeat period.
    Heartbeat,
}

impl<S: Source> Watcher<S> {
    async fn run(mut self, wake: watch::Receiver<u64>, shutdown: CancellationToken) {
        let outcome = tokio::select! {
            outcome = self.serve(wake) => outcome,
            () = shutdown.cancelled() => Ok(()),
        };
        if let Err(status) = outcome {
            let _ = self.sender.try_send(Err(status));
        }
    }

    /// Delivers until the client goes away (`Ok`) or the store fails (`Err`).
    async fn serve(&mut self, mut wake: watch::Receiver<u64>) -> Result<(), Status> {
        loop {
            // Marked seen before reading, so a commit during the read wakes the wait below.
            wake.borrow_and_update();
            match self.deliver_page().await? {
                Delivery::Gone => return Ok(()),
                Delivery::More => continue,
                Delivery::CaughtUp => {}
            }
            let woken = tokio::select! {
                _ = wake.changed() => Wake::Read,
                () = sleep(FALLBACK_REREAD) => Wake::Read,
                () = sleep_until(self.next_heartbeat) => Wake::Heartbeat,
                () = self.sender.closed() => return Ok(()),
            };
            if matches!(woken, Wake::Heartbeat) {
                let message =
                    S::heartbeat(crate::time::to_timestamp(crate::time::now_millis()), self.cursor.to_string());
                if !self.send(message).await {
                    return Ok(());
                }
            }
        }
    }

    /// Sends the next page of rows after the cursor, below a fresh horizon.
    async fn deliver_page(&mut self) -> Result<Delivery, Status> {
        let horizon = self.source.horizon().await?;
        let rows = self.source.page(&self.cursor, horizon, self.committed.as_ref(), PAGE).await?;
        let full = rows.len() as i64 == PAGE;
        for (cursor, item) in rows {
            let message = S::event(item, cursor.to_string());
            self.cursor = cursor;
            if !self.send(message).await {
                return Ok(Delivery::Gone);
            }
        }
        if full {
            return Ok(Delivery::More);
        }
        // Every matching row below the horizon was delivered: resume from there.
        self.cursor = self.cursor.clone().max(Cursor::before(horizon));
        if self.committed.as_ref().is_some_and(|committed| self.cursor.position >= committed.xmax) {
            self.committed = None;
        }
        Ok(Delivery::CaughtUp)
    }

    /// Sends `message`, waiting while the channel is full; false when the client went away.
    async fn send(&mut self, message: S::Response) -> bool {
        self.next_heartbeat = Instant::now() + self.heartbeat;
        self.sender.send(Ok(message)).await.is_ok()
    }
}
