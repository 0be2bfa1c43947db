//! `WatchItemEvents` serving (docs/items.md, "Watching events"): a task per stream reads
//! the backlog in pages below the store's horizon, then waits for a wake-up (a commit of
//! this process or, on PostgreSQL, of any replica; a slow re-read as a safety net) and
//! sends heartbeats while idle. It writes into a bounded channel and waits while the
//! channel is full, so a slow client holds at most one page plus the channel in memory.
//! It ends when the client goes away or the server's shutdown token fires.

use std::time::Duration;

use economy_proto::items::v1 as pb;
use pb::watch_item_events_response::Kind;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert;
use crate::domain::cursor::Cursor;
use crate::domain::watch::{WatchFilter, WatchStart};
use crate::store::{Committed, ItemStore};

/// Events read per page.
const PAGE: i64 = 100;
/// Messages buffered towards one client.
const BUFFER: usize = 64;
/// Re-read this often even without a wake-up (a notification lost while the PostgreSQL
/// listener reconnected only delays delivery).
const FALLBACK_REREAD: Duration = Duration::from_secs(5);

/// The responses of one stream.
pub type EventStream = ReceiverStream<Result<pb::WatchItemEventsResponse, Status>>;

/// Settings of every stream.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// A heartbeat is sent after this long without a message.
    pub heartbeat: Duration,
    /// Streams end when it fires.
    pub shutdown: CancellationToken,
}

/// Starts a stream of `filter`'s events from `start`.
pub async fn open(
    store: ItemStore,
    filter: WatchFilter,
    start: WatchStart,
    options: &WatchOptions,
) -> Result<EventStream, Status> {
    let (cursor, committed) = match start {
        WatchStart::After(cursor) => (cursor, None),
        WatchStart::Beginning => (Cursor::start(), None),
        WatchStart::Now => {
            let start = store.start_point().await?;
            (Cursor::before(start.horizon), start.committed)
        }
    };
    let (sender, receiver) = mpsc::channel(BUFFER);
    let heartbeat = options.heartbeat;
    let next_heartbeat = Instant::now() + heartbeat;
    let watcher = Watcher { store, filter, cursor, committed, sender, heartbeat, next_heartbeat };
    tokio::spawn(watcher.run(options.shutdown.clone()));
    Ok(ReceiverStream::new(receiver))
}

/// Whether the client still listens.
enum Delivery {
    /// Caught up with the horizon (the page was not full).
    CaughtUp,
    /// More events may follow right away.
    More,
    /// The client went away.
    Gone,
}

struct Watcher {
    store: ItemStore,
    filter: WatchFilter,
    /// Everything up to here was delivered (or did not match).
    cursor: Cursor,
    /// A stream from now on PostgreSQL: the events committed before it started, left out
    /// until the cursor passes the snapshot's `xmax`.
    committed: Option<Committed>,
    sender: mpsc::Sender<Result<pb::WatchItemEventsResponse, Status>>,
    heartbeat: Duration,
    /// When to send a heartbeat unless a message goes out before.
    next_heartbeat: Instant,
}

/// What ended a wait.
enum Wake {
    /// Events may have committed: read again.
    Read,
    /// Idle for a heartbeat period.
    Heartbeat,
}

impl Watcher {
    async fn run(mut self, shutdown: CancellationToken) {
        let outcome = tokio::select! {
            outcome = self.serve() => outcome,
            () = shutdown.cancelled() => Ok(()),
        };
        if let Err(status) = outcome {
            let _ = self.sender.try_send(Err(status));
        }
    }

    /// Delivers until the client goes away (`Ok`) or the store fails (`Err`).
    async fn serve(&mut self) -> Result<(), Status> {
        let mut appended = self.store.appended();
        loop {
            // Marked seen before reading, so a commit during the read wakes the wait below.
            appended.borrow_and_update();
            match self.deliver_page().await? {
                Delivery::Gone => return Ok(()),
                Delivery::More => continue,
                Delivery::CaughtUp => {}
            }
            let wake = tokio::select! {
                _ = appended.changed() => Wake::Read,
                () = sleep(FALLBACK_REREAD) => Wake::Read,
                () = sleep_until(self.next_heartbeat) => Wake::Heartbeat,
                () = self.sender.closed() => return Ok(()),
            };
            if matches!(wake, Wake::Heartbeat) && !self.send(Kind::Heartbeat(heartbeat())).await {
                return Ok(());
            }
        }
    }

    /// Sends the next page of events after the cursor, below a fresh horizon.
    async fn deliver_page(&mut self) -> Result<Delivery, Status> {
        let horizon = self.store.horizon().await?;
        let committed = self.committed.as_ref();
        let events = self.store.events_after(&self.filter, &self.cursor, horizon, committed, PAGE).await?;
        let full = events.len() as i64 == PAGE;
        for (cursor, event) in events {
            self.cursor = cursor;
            if !self.send(Kind::Event(convert::event(&event))).await {
                return Ok(Delivery::Gone);
            }
        }
        if full {
            return Ok(Delivery::More);
        }
        // Every matching event below the horizon was delivered: resume from there.
        self.cursor = self.cursor.clone().max(Cursor::before(horizon));
        if self.committed.as_ref().is_some_and(|committed| self.cursor.position >= committed.xmax) {
            self.committed = None;
        }
        Ok(Delivery::CaughtUp)
    }

    /// Sends `kind` with the current cursor, waiting while the channel is full; false
    /// when the client went away.
    async fn send(&mut self, kind: Kind) -> bool {
        let message = pb::WatchItemEventsResponse { kind: Some(kind), cursor: self.cursor.to_string() };
        self.next_heartbeat = Instant::now() + self.heartbeat;
        self.sender.send(Ok(message)).await.is_ok()
    }
}

fn heartbeat() -> pb::WatchHeartbeat {
    pb::WatchHeartbeat { sent_at: Some(economy_kit::time::to_timestamp(economy_kit::time::now_millis())) }
}
