//! Cron schedules in a time zone (docs/operations.md, "Background jobs"): when a scheduled
//! job (the ledger's whole reconciliation, the gateway's consistency check…) is due.
//!
//! An expression has the five fields of cron — minute, hour, day of month, month, day of
//! week — (`0 2 * * *`: every day at 02:00) or an alias (`@daily`, `@hourly`); it is read
//! in an IANA time zone (`UTC`, `Europe/Berlin`). Across a daylight-saving change a wall
//! time that does not exist runs at the first instant after the gap, and a wall time that
//! occurs twice runs once, at its first occurrence (croner's rules).
//! [`crate::job_runs`] runs a job once per scheduled instant across replicas.

use std::str::FromStr;

use chrono::{DateTime, TimeZone as _, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// The time zone of a service's schedules: its `time_zone` setting.
pub type TimeZone = Tz;

/// The time zone named `name` (an IANA name such as `UTC` or `Europe/Berlin`). Errors name
/// `setting` (e.g. `ledger.time_zone`), so a start-up refusal says what to fix.
pub fn time_zone(name: &str, setting: &str) -> anyhow::Result<TimeZone> {
    Tz::from_str(name.trim()).map_err(|_| {
        anyhow::anyhow!("{setting}: unknown time zone {name:?} (an IANA name such as UTC or Europe/Berlin)")
    })
}

/// When a job is due: a cron expression read in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: TimeZone,
    expression: String,
}

impl Schedule {
    /// Parses `expression` (five cron fields or an alias) read in `zone`. Errors name
    /// `setting` (e.g. `ledger.reconcile_schedule`) and say why the expression is wrong.
    pub fn parse(expression: &str, zone: TimeZone, setting: &str) -> anyhow::Result<Self> {
        let parser = CronParser::builder().seconds(Seconds::Disallowed).build();
        let cron = parser.parse(expression.trim()).map_err(|error| {
            anyhow::anyhow!(
                "{setting}: {expression:?} is not a cron schedule ({error}); five fields, \
                 minute hour day-of-month month day-of-week, e.g. \"0 2 * * *\""
            )
        })?;
        let schedule = Self { cron, zone, expression: expression.trim().to_owned() };
        // A pattern that never matches (`0 0 31 2 *`) is refused now, not at its first run.
        anyhow::ensure!(schedule.next_after(0).is_some(), "{setting}: {expression:?} never comes (no day matches it)");
        Ok(schedule)
    }

    /// The expression as configured.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone it is read in.
    pub fn zone(&self) -> TimeZone {
        self.zone
    }

    /// The first scheduled instant strictly after `millis` (ms since the epoch), in ms
    /// since the epoch; `None` when none comes (or the instant is out of range).
    pub fn next_after(&self, millis: i64) -> Option<i64> {
        let from = self.zoned(millis)?;
        self.cron.find_next_occurrence(&from, false).ok().map(|at| at.timestamp_millis())
    }

    /// The last scheduled instant at or before `millis` (ms since the epoch); `None` when
    /// none came.
    pub fn latest_at_or_before(&self, millis: i64) -> Option<i64> {
        let from = self.zoned(millis)?;
        self.cron.find_previous_occurrence(&from, true).ok().map(|at| at.timestamp_millis())
    }

    fn zoned(&self, millis: i64) -> Option<DateTime<Tz>> {
        let utc: DateTime<Utc> = Utc.timestamp_millis_opt(millis).single()?;
        Some(utc.with_timezone(&self.zone))
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn berlin() -> TimeZone {
        time_zone("Europe/Berlin", "test.time_zone").expect("known zone")
    }

    /// `y-m-d h:mi` UTC in ms since the epoch.
    fn utc(y: i32, m: u32, d: u32, h: u32, mi: u32) -> i64 {
        let naive = NaiveDate::from_ymd_opt(y, m, d).and_then(|date| date.and_hms_opt(h, mi, 0)).expect("valid");
        naive.and_utc().timestamp_millis()
    }

    #[test]
    fn daily_at_two_in_utc() {
        let schedule = Schedule::parse("0 2 * * *", Tz::UTC, "x").expect("parsed");
        assert_eq!(schedule.next_after(utc(2026, 1, 10, 1, 59)), Some(utc(2026, 1, 10, 2, 0)));
        // Strictly after: at 02:00 the next run is tomorrow's.
        assert_eq!(schedule.next_after(utc(2026, 1, 10, 2, 0)), Some(utc(2026, 1, 11, 2, 0)));
        assert_eq!(schedule.latest_at_or_before(utc(2026, 1, 10, 2, 0)), Some(utc(2026, 1, 10, 2, 0)));
        assert_eq!(schedule.latest_at_or_before(utc(2026, 1, 10, 1, 0)), Some(utc(2026, 1, 9, 2, 0)));
    }

    #[test]
    fn a_zone_moves_the_instant() {
        let schedule = Schedule::parse("0 2 * * *", berlin(), "x").expect("parsed");
        // Winter: 02:00 in Berlin is 01:00 UTC; summer: 00:00 UTC.
        assert_eq!(schedule.next_after(utc(2026, 1, 10, 0, 0)), Some(utc(2026, 1, 10, 1, 0)));
        assert_eq!(schedule.next_after(utc(2026, 7, 10, 0, 30)), Some(utc(2026, 7, 11, 0, 0)));
    }

    #[test]
    fn spring_forward_runs_once_right_after_the_gap() {
        // 2026-03-29 in Berlin: 02:00 CET jumps to 03:00 CEST (01:00 UTC); 02:30 never occurs.
        let schedule = Schedule::parse("30 2 * * *", berlin(), "x").expect("parsed");
        let saturday = utc(2026, 3, 28, 1, 30); // 02:30 CET
        assert_eq!(schedule.next_after(saturday - 1), Some(saturday));
        let sunday = schedule.next_after(saturday).expect("a run on the day of the change");
        assert_eq!(sunday, utc(2026, 3, 29, 1, 0), "03:00 CEST, the first instant after the gap");
        assert_eq!(schedule.next_after(sunday), Some(utc(2026, 3, 30, 0, 30)), "02:30 CEST on Monday");
    }

    #[test]
    fn fall_back_runs_a_repeated_time_once() {
        // 2026-10-25 in Berlin: 03:00 CEST goes back to 02:00 CET; 02:30 occurs twice.
        let schedule = Schedule::parse("30 2 * * *", berlin(), "x").expect("parsed");
        let first = schedule.next_after(utc(2026, 10, 24, 23, 0)).expect("a run on the day of the change");
        assert_eq!(first, utc(2026, 10, 25, 0, 30), "02:30 CEST");
        assert_eq!(schedule.next_after(first), Some(utc(2026, 10, 26, 1, 30)), "then Monday's 02:30 CET");
    }

    #[test]
    fn hourly_keeps_its_pace_across_a_change() {
        let schedule = Schedule::parse("0 * * * *", berlin(), "x").expect("parsed");
        let mut at = utc(2026, 3, 28, 23, 0);
        for _ in 0..4 {
            let next = schedule.next_after(at).expect("next");
            assert_eq!(next - at, 3_600_000);
            at = next;
        }
    }

    #[test]
    fn bad_settings_are_refused_naming_the_setting() {
        let zone = time_zone("Mars/Olympus", "ledger.time_zone").expect_err("unknown zone").to_string();
        assert!(zone.contains("ledger.time_zone") && zone.contains("Mars/Olympus"), "{zone}");
        for expression in ["0 25 * * *", "every day", "", "0 0 2 * * *", "0 0 31 2 *"] {
            let error = Schedule::parse(expression, Tz::UTC, "ledger.reconcile_schedule").expect_err(expression);
            assert!(error.to_string().starts_with("ledger.reconcile_schedule: "), "{error}");
        }
        assert!(Schedule::parse("@hourly", Tz::UTC, "x").is_ok());
    }
}
