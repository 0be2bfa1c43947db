//! Reads: instances, their events, and what the jobs must process.

use sqlx::{Any, Executor};

use super::rows::{self, EVENT_COLUMNS, EventRow, ITEM_COLUMNS, ItemRow};
use super::{ItemFilter, ItemStore, Page};
use crate::domain::ItemError;
use crate::domain::event::Event;
use crate::domain::ids::CorrelationId;
use crate::domain::item::Item;

/// An `ItemRow` followed by the template's `consumable` flag.
type FlaggedItemRow = (
    String,
    String,
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    String,
    String,
    i64,
    i64,
    i64,
    i64,
);
/// An `EventRow` followed by the request fingerprint.
type FingerprintedEventRow = (
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
    String,
);

/// One instance and its template's `consumable` flag, through any executor.
pub(super) async fn item_with_flag<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    id: &str,
) -> Result<Option<(Item, bool)>, ItemError> {
    let sql = format!(
        "SELECT {ITEM_COLUMNS}, t.consumable FROM item_instances i \
         JOIN item_templates t ON t.code = i.template_code WHERE i.id = $1"
    );
    let row: Option<FlaggedItemRow> = sqlx::query_as(&sql).bind(id).fetch_optional(executor).await?;
    let Some((a, b, c, d, e, f, g, h, i, j, k, l, m, consumable)) = row else {
        return Ok(None);
    };
    Ok(Some((rows::item((a, b, c, d, e, f, g, h, i, j, k, l, m))?, consumable != 0)))
}

/// The event recorded under `key` on `item_id`, and its request fingerprint.
pub(super) async fn event_by_key<'e, E: Executor<'e, Database = Any>>(
    executor: E,
    item_id: &str,
    key: &str,
) -> Result<Option<(Event, String)>, ItemError> {
    let sql = format!(
        "SELECT {EVENT_COLUMNS}, fingerprint FROM item_events WHERE item_instance_id = $1 AND idempotency_key = $2"
    );
    let row: Option<FingerprintedEventRow> =
        sqlx::query_as(&sql).bind(item_id).bind(key).fetch_optional(executor).await?;
    let Some((a, b, c, d, e, f, g, h, i, j, k, l, m, n, fingerprint)) = row else {
        return Ok(None);
    };
    Ok(Some((rows::event((a, b, c, d, e, f, g, h, i, j, k, l, m, n))?, fingerprint)))
}

/// The page of an owner's instances (`$1`) in five statuses (`$2`–`$6`), after an id
/// (`$7`) when `after`, limited by the last parameter. The two forms keep the id bound in
/// the index seek (a `($7 = '' OR id < $7)` form would walk every newer item first).
pub(super) fn items_sql(after: bool) -> String {
    let (bound, limit) = if after { (" AND i.id < $7", "$8") } else { ("", "$7") };
    format!(
        "SELECT {ITEM_COLUMNS} FROM item_instances i \
         WHERE i.owner_user_id = $1 AND i.status IN ($2, $3, $4, $5, $6){bound} ORDER BY i.id DESC LIMIT {limit}"
    )
}

impl ItemStore {
    /// One instance.
    pub async fn item(&self, id: &str) -> Result<Option<Item>, ItemError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM item_instances i WHERE i.id = $1");
        let row: Option<ItemRow> = sqlx::query_as(&sql).bind(id).fetch_optional(self.db.pool()).await?;
        row.map(rows::item).transpose()
    }

    /// Instances of `filter.owner` in the wanted statuses, newest first, ids strictly
    /// below `page.after`: a walk of `item_instances_by_owner` from there, so a deep
    /// page costs what the first one does.
    pub async fn items(&self, filter: &ItemFilter, page: &Page<String>) -> Result<Vec<Item>, ItemError> {
        let sql = items_sql(page.after.is_some());
        let mut query = sqlx::query_as::<_, ItemRow>(&sql).bind(filter.owner.get());
        for status in filter.status_binds() {
            query = query.bind(status);
        }
        if let Some(after) = &page.after {
            query = query.bind(after.as_str());
        }
        let rows = query.bind(page.limit).fetch_all(self.db.pool()).await?;
        rows.into_iter().map(rows::item).collect()
    }

    /// Locked instances whose holder starts with `holder_prefix`, by id, ids strictly
    /// above `page.after`.
    pub async fn locked_items(&self, holder_prefix: &str, page: &Page<String>) -> Result<Vec<Item>, ItemError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM item_instances i WHERE i.status = 'locked' \
             AND i.lock_holder LIKE $1 ESCAPE '\\' AND i.id > $2 ORDER BY i.id LIMIT $3"
        );
        let escaped: String = holder_prefix
            .chars()
            .flat_map(|char| match char {
                '\\' | '%' | '_' => vec!['\\', char],
                char => vec![char],
            })
            .collect();
        let rows = sqlx::query_as::<_, ItemRow>(&sql)
            .bind(format!("{escaped}%"))
            .bind(page.after.clone().unwrap_or_default())
            .bind(page.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter().map(rows::item).collect()
    }

    /// Events of one instance, oldest first, versions strictly above `page.after`
    /// ([`events_sql`]: O(page)).
    pub async fn events(&self, item_id: &str, page: &Page<i64>) -> Result<Vec<Event>, ItemError> {
        let sql = events_sql();
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(item_id)
            .bind(page.after.unwrap_or(0))
            .bind(page.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter().map(rows::event).collect()
    }

    /// Events recorded with `correlation_id`, oldest first (by UUIDv7 id), ids strictly
    /// above `page.after`; `viewer` `None` sees all of them, `Some(user)` only those whose
    /// previous or new owner is `user` ([`correlated_events_sql`]).
    pub async fn correlated_events(
        &self,
        correlation_id: &CorrelationId,
        viewer: Option<i64>,
        page: &Page<String>,
    ) -> Result<Vec<Event>, ItemError> {
        let sql = correlated_events_sql();
        let rows: Vec<EventRow> = sqlx::query_as(&sql)
            .bind(correlation_id.as_str())
            .bind(page.after.clone().unwrap_or_default())
            .bind(i64::from(viewer.is_none()))
            .bind(viewer.unwrap_or(0))
            .bind(page.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter().map(rows::event).collect()
    }

    /// Ids of available instances whose expiry is at or before `now`, oldest expiry first.
    pub async fn due_items(&self, now: i64, limit: i64) -> Result<Vec<String>, ItemError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM item_instances WHERE status = 'available' AND expires_at IS NOT NULL \
             AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// `(id, version)` of locked instances whose lock expiry is at or before `now`.
    pub async fn due_locks(&self, now: i64, limit: i64) -> Result<Vec<(String, i64)>, ItemError> {
        Ok(sqlx::query_as(
            "SELECT id, version FROM item_instances WHERE status = 'locked' AND lock_expires_at IS NOT NULL \
             AND lock_expires_at <= $1 ORDER BY lock_expires_at, id LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Id of the instance created by the grant with `key`.
    pub(super) async fn granted_by(&self, key: &str) -> Result<Option<String>, ItemError> {
        let row: Option<(String,)> = sqlx::query_as("SELECT id FROM item_instances WHERE grant_key = $1")
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
        Ok(row.map(|(id,)| id))
    }
}

/// One instance's events after a version (`$1` instance, `$2` version, `$3` limit): a
/// walk of the UNIQUE (item_instance_id, version) index in the page's order, so a page
/// costs O(page) however long the instance's history (`store/events_plan_tests.rs`).
fn events_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM item_events WHERE item_instance_id = $1 AND version > $2 \
         ORDER BY version LIMIT $3"
    )
}

/// One correlation's events after an id (`$1` correlation, `$2` id, `$3` 1 to see every
/// event, `$4` else the viewer, `$5` limit): a walk of `item_events_by_correlation
/// (correlation_id, id)` in the page's order. `correlation_id <> ''` repeats the partial
/// index's condition so both backends use it; the viewer is a filter over the
/// correlation's few events.
fn correlated_events_sql() -> String {
    format!(
        "SELECT {EVENT_COLUMNS} FROM item_events WHERE correlation_id = $1 AND correlation_id <> '' \
         AND id > $2 AND ($3 = 1 OR from_owner_user_id = $4 OR to_owner_user_id = $4) ORDER BY id LIMIT $5"
    )
}

#[cfg(test)]
#[path = "events_plan_tests.rs"]
mod events_plan_tests;
