//! `GetItemReport` (docs/items.md, "Reports"): the report of the store at the clock's
//! "now", with locks older than the configured age listed as stale.

use std::time::Duration;

use economy_kit::time::{duration_millis, to_timestamp};
use economy_proto::items::v1 as pb;

use super::convert;
use crate::store::{ItemReport, StatusCount};

/// Default of `items.stale_lock_after_days`.
pub const DEFAULT_STALE_LOCK_DAYS: u64 = 30;

/// What the report calls stale.
#[derive(Debug, Clone, Copy)]
pub struct ReportOptions {
    /// A lock held longer than this is stale (`items.stale_lock_after_days`).
    pub stale_lock_age: Duration,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { stale_lock_age: days(DEFAULT_STALE_LOCK_DAYS) }
    }
}

/// `days` days as a duration.
pub fn days(days: u64) -> Duration {
    Duration::from_secs(days.saturating_mul(24 * 3600))
}

impl ReportOptions {
    /// The instant (ms since the epoch) before which a lock taken is stale, at `now`.
    pub fn stale_before(&self, now: i64) -> i64 {
        now.saturating_sub(duration_millis(self.stale_lock_age))
    }
}

/// The response for `report`, whose stale cutoff was `stale_before`.
pub fn response(report: &ItemReport, stale_before: i64) -> pb::GetItemReportResponse {
    pb::GetItemReportResponse {
        statuses: report.statuses.iter().map(status_count).collect(),
        stale_before: Some(to_timestamp(stale_before)),
        stale_locked_count: report.stale_locked_count,
        stale_locked: report.stale_locked.iter().map(convert::item).collect(),
    }
}

fn status_count(count: &StatusCount) -> pb::ItemStatusCount {
    pb::ItemStatusCount {
        template_code: count.template_code.clone(),
        status: convert::status(count.status).into(),
        count: count.count,
    }
}
