//! The event stream's storage side (docs/items.md, "Watching events"; the ordering rule
//! in docs/streams.md): stream positions of new events and pages of events after a
//! cursor. Positions: SQLite the largest committed one plus one, taken inside the writing
//! transaction; PostgreSQL the writing transaction's id.

use economy_kit::db::Backend;
use economy_kit::watch::{Committed, Cursor, StartPoint, StreamTable};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ItemStore;
use super::rows::{self, EVENT_COLUMNS};
use crate::domain::ItemError;
use crate::domain::event::Event;
use crate::domain::watch::WatchFilter;

/// The stream's table; PostgreSQL channel notified after this process's commits.
const TABLE: StreamTable =
    StreamTable { table: "item_events", position: "stream_position", channel: "economy_item_events" };

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

/// SQL expression of a new event's stream position, evaluated in its transaction.
pub(super) fn position_sql(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "(SELECT COALESCE(MAX(stream_position), 0) + 1 FROM item_events)",
        Backend::Postgres => "pg_current_xact_id()::text::bigint",
    }
}

impl ItemStore {
    /// A receiver that changes after events were appended (`Appended`).
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// On PostgreSQL, relays commits between replicas until `shutdown` (`Appended`).
    pub fn spawn_relay(&self, shutdown: CancellationToken) {
        self.appended.spawn_relay(TABLE, &self.db, &self.url, shutdown);
    }

    /// The stream horizon now (docs/streams.md).
    pub async fn horizon(&self) -> Result<i64, ItemError> {
        Ok(TABLE.horizon(&self.db).await?)
    }

    /// The start of a stream "from now" (docs/streams.md).
    pub async fn start_point(&self) -> Result<StartPoint, ItemError> {
        Ok(TABLE.start_point(&self.db).await?)
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
        let not_committed = committed.map_or(String::new(), |_| format!("AND {}", TABLE.not_committed("$14")));
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
            .bind(after.id.clone())
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
}
