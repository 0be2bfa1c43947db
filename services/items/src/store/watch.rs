//! The event stream's storage side (docs/items.md, "Watching events"): stream positions
//! of new events, the horizon below which the stream may deliver, pages of events after
//! a cursor, and the wake-up signalled when events commit.
//!
//! The rule that keeps a cursor from skipping or repeating an event: a reader delivers
//! only events whose position is below the **horizon**, read before the page, and every
//! event that commits later has a position at or above that horizon.
//! - SQLite: the one writer serializes write transactions and a new event's position is
//!   the largest committed one plus one, taken inside the writing transaction, so
//!   positions are commit order; the horizon is the largest committed position plus one.
//! - PostgreSQL: a new event's position is its transaction's id (`pg_current_xact_id()`,
//!   a 64-bit xid8); the horizon is the oldest transaction id still running
//!   (`pg_snapshot_xmin(pg_current_snapshot())`). Every transaction below it has ended,
//!   so its events are all visible to the page read after; every transaction running or
//!   starting later has an id at or above it. A long transaction on the items database
//!   therefore holds every stream back until it ends.
//!
//! "From now" starts before the horizon; on PostgreSQL events at or above it may already
//! be committed then, so the stream also leaves out the events visible in the snapshot
//! taken when it started ([`StartPoint::committed`]) until it has passed that
//! snapshot's `xmax`, above which nothing was visible.

use std::sync::Arc;
use std::time::Duration;

use economy_kit::db::Backend;
use sqlx::postgres::PgListener;
use sqlx::{Any, Transaction};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ItemStore;
use super::rows::{self, EVENT_COLUMNS};
use crate::domain::ItemError;
use crate::domain::cursor::Cursor;
use crate::domain::event::Event;
use crate::domain::watch::WatchFilter;

/// PostgreSQL channel notified by every transaction that appends events.
const CHANNEL: &str = "economy_item_events";
/// Pause before the PostgreSQL listener reconnects after an error.
const LISTENER_RETRY: Duration = Duration::from_secs(1);

/// An `EventRow` followed by the stream position.
type PositionedEventRow = (
    String,
    String,
    i64,
    String,
    String,
    String,
    Option<i64>,
    i64,
    Option<String>,
    String,
    String,
    String,
    i64,
    String,
    i64,
);

/// Counts commits that appended events; watchers wait for it to change. Signalled by this
/// process's writes and, on PostgreSQL, by every replica's (LISTEN/NOTIFY).
#[derive(Debug, Clone)]
pub struct Appended(Arc<watch::Sender<u64>>);

impl Default for Appended {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Appended {
    /// Wakes every watcher.
    pub(super) fn signal(&self) {
        self.0.send_modify(|count| *count = count.wrapping_add(1));
    }
}

/// SQL expression of a new event's stream position, evaluated in its transaction.
pub(super) fn position_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "(SELECT COALESCE(MAX(stream_position), 0) + 1 FROM item_events)",
        Backend::Postgres => "pg_current_xact_id()::text::bigint",
    }
}

/// On PostgreSQL, has `tx`'s commit notify the listeners of every replica.
pub(super) async fn announce(tx: &mut Transaction<'_, Any>, backend: Backend) -> Result<(), sqlx::Error> {
    if backend == Backend::Postgres {
        sqlx::query(&format!("NOTIFY {CHANNEL}")).execute(&mut **tx).await?;
    }
    Ok(())
}

/// Where a stream "from now" starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartPoint {
    /// The horizon then.
    pub horizon: i64,
    /// PostgreSQL: the events committed then at or above the horizon, to leave out.
    pub committed: Option<Committed>,
}

/// The PostgreSQL snapshot of a stream's start: events visible in it were committed
/// before the stream started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// `pg_current_snapshot()` as text.
    pub snapshot: String,
    /// Its `xmax`: no position at or above it was visible.
    pub xmax: i64,
}

fn horizon_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SELECT COALESCE(MAX(stream_position), 0) + 1 FROM item_events",
        Backend::Postgres => "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    }
}

impl ItemStore {
    /// A receiver that changes after events were appended (see [`Appended`]).
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.0.subscribe()
    }

    /// The stream horizon now: every event that commits from now on has a position at or
    /// above it, and every event below it is committed (module docs).
    pub async fn horizon(&self) -> Result<i64, ItemError> {
        let (horizon,): (i64,) = sqlx::query_as(horizon_sql(self.backend())).fetch_one(self.db.pool()).await?;
        Ok(horizon)
    }

    /// The start of a stream "from now" (module docs).
    pub async fn start_point(&self) -> Result<StartPoint, ItemError> {
        if self.backend() == Backend::Sqlite {
            return Ok(StartPoint { horizon: self.horizon().await?, committed: None });
        }
        let (horizon, xmax, snapshot): (i64, i64, String) = sqlx::query_as(
            "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint, s::text \
             FROM pg_current_snapshot() AS s",
        )
        .fetch_one(self.db.pool())
        .await?;
        Ok(StartPoint { horizon, committed: Some(Committed { snapshot, xmax }) })
    }

    /// Up to `limit` events of `filter` strictly after `after` and below `horizon` (read
    /// with [`ItemStore::horizon`] before this call), in stream order, with their cursors;
    /// without those visible in `committed` (PostgreSQL only).
    pub async fn events_after(
        &self,
        filter: &WatchFilter,
        after: &Cursor,
        horizon: i64,
        committed: Option<&Committed>,
        limit: i64,
    ) -> Result<Vec<(Cursor, Event)>, ItemError> {
        let not_committed = match committed {
            Some(_) => "AND NOT pg_visible_in_snapshot(stream_position::text::xid8, $14::text::pg_snapshot)",
            None => "",
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, stream_position FROM item_events \
             WHERE stream_position >= $1 AND (stream_position > $1 OR id > $2) AND stream_position < $3 \
             AND ($4 = 0 OR from_owner_user_id = $4 OR to_owner_user_id = $4) \
             AND ($5 = '' OR item_instance_id IN (SELECT i.id FROM item_instances i WHERE i.template_code = $5)) \
             AND event_type IN ($6, $7, $8, $9, $10, $11, $12) {not_committed} \
             ORDER BY stream_position, id LIMIT $13"
        );
        let mut query = sqlx::query_as::<_, PositionedEventRow>(&sql)
            .bind(after.position)
            .bind(after.event_id.clone())
            .bind(horizon)
            .bind(filter.owner.map_or(0, |owner| owner.get()))
            .bind(filter.template.as_ref().map_or("", |template| template.as_str()).to_owned());
        for kind in filter.type_binds() {
            query = query.bind(kind);
        }
        query = query.bind(limit);
        if let Some(committed) = committed {
            query = query.bind(committed.snapshot.clone());
        }
        let rows = query.fetch_all(self.db.pool()).await?;
        rows.into_iter()
            .map(|(a, b, c, d, e, f, g, h, i, j, k, l, m, n, position)| {
                let event = rows::event((a, b, c, d, e, f, g, h, i, j, k, l, m, n))?;
                Ok((Cursor::after(position, &event.id), event))
            })
            .collect()
    }

    /// On PostgreSQL, listens for other replicas' commits (NOTIFY) and signals
    /// [`Appended`] until `shutdown`; nothing on SQLite, whose writers are all in this
    /// process.
    pub fn spawn_listener(&self, shutdown: CancellationToken) {
        if self.backend() != Backend::Postgres {
            return;
        }
        let (url, appended) = (self.url.clone(), self.appended.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = listen(&url, &appended) => {}
            }
        });
    }
}

/// Relays notifications forever, reconnecting after errors (watchers also re-read on a
/// slow timer, so a notification lost while reconnecting only delays them).
async fn listen(url: &str, appended: &Appended) {
    loop {
        if let Err(error) = relay(url, appended).await {
            tracing::warn!(%error, "items event listener failed; reconnecting");
        }
        appended.signal();
        tokio::time::sleep(LISTENER_RETRY).await;
    }
}

async fn relay(url: &str, appended: &Appended) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    loop {
        listener.recv().await?;
        appended.signal();
    }
}
