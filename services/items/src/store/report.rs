//! The items report (docs/items.md, "Reports"): instances per template and status, and
//! the locks taken before a cutoff. It reads every instance, in one snapshot of a
//! [`economy_kit::db::LongRead`] so a caller that goes away stops the scan.

use crate::domain::ItemError;
use crate::domain::item::{Item, ItemStatus};

use super::ItemStore;
use super::rows::{self, ITEM_COLUMNS, ItemRow};

/// How many instances of one template are in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    /// The template's code.
    pub template_code: String,
    /// The status.
    pub status: ItemStatus,
    /// Instances (at least 1).
    pub count: i64,
}

/// The report at one snapshot.
#[derive(Debug, Clone, Default)]
pub struct ItemReport {
    /// Every (template, status) pair with instances, by template then status name.
    pub statuses: Vec<StatusCount>,
    /// Locked instances whose lock was taken before the cutoff.
    pub stale_locked_count: i64,
    /// The oldest of them first, at most the limit asked for.
    pub stale_locked: Vec<Item>,
}

impl ItemStore {
    /// The report: counts per template and status, and the locks taken before
    /// `stale_before` (ms since the epoch), the `stale_limit` oldest listed. The counts scan
    /// every instance; the stale locks seek the `(status, …)` index to the locked ones.
    ///
    /// Errors: `ItemError::Storage` (a corrupt status or row, a database failure).
    pub async fn report(&self, stale_before: i64, stale_limit: i64) -> Result<ItemReport, ItemError> {
        let mut read = self.db.long_read().await?;
        read.one_snapshot().await?;
        let counts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT template_code, status, COUNT(*) FROM item_instances \
             GROUP BY template_code, status ORDER BY template_code, status",
        )
        .fetch_all(&mut read)
        .await?;
        let (stale_locked_count,): (i64,) =
            sqlx::query_as("SELECT COUNT(*) FROM item_instances WHERE status = 'locked' AND locked_at < $1")
                .bind(stale_before)
                .fetch_one(&mut read)
                .await?;
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM item_instances i WHERE i.status = 'locked' AND i.locked_at < $1 \
             ORDER BY i.locked_at, i.id LIMIT $2"
        );
        let stale: Vec<ItemRow> = if stale_limit > 0 {
            sqlx::query_as(&sql).bind(stale_before).bind(stale_limit).fetch_all(&mut read).await?
        } else {
            Vec::new()
        };
        read.finish().await?;
        Ok(ItemReport {
            statuses: counts.into_iter().map(status_count).collect::<Result<_, _>>()?,
            stale_locked_count,
            stale_locked: stale.into_iter().map(rows::item).collect::<Result<_, _>>()?,
        })
    }
}

fn status_count((template_code, status, count): (String, String, i64)) -> Result<StatusCount, ItemError> {
    let status = ItemStatus::parse(&status)
        .ok_or_else(|| ItemError::Storage(format!("corrupt status {status} of template {template_code}").into()))?;
    Ok(StatusCount { template_code, status, count })
}
