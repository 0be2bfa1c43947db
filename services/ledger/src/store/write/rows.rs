//! The rows every write path records alike (a journal entry, its postings numbered by leg
//! order, its balance moves) and their bind parameters, numbered by [`Params`] as they are
//! bound.

use economy_kit::db::params::{Params, Placeholder, tuple};

use crate::domain::entry::{BalanceDelta, EntryMeta, Leg};

/// Binds a journal entry row's eight columns: id, idempotency key, fingerprint, business
/// type, correlation id, memo, actor, created at (`now`, ms). Returns their placeholders
/// in that order (the last one is the entry's instant, which statements reuse).
pub(super) fn bind_entry<'q>(
    params: &mut Params<'q>,
    id: &'q str,
    meta: &'q EntryMeta,
    now: i64,
) -> Result<[Placeholder; 8], sqlx::Error> {
    Ok([
        params.push(id)?,
        params.push(meta.key.as_str())?,
        params.push(meta.fingerprint.as_str())?,
        params.push(meta.business_type.as_str())?,
        params.push(meta.correlation_id.as_str())?,
        params.push(meta.memo.as_str())?,
        params.push(meta.actor.as_str())?,
        params.push(now)?,
    ])
}

/// A `postings` row.
#[derive(Debug, Clone)]
pub(super) struct PostingRow<'l> {
    pub(super) entry_id: &'l str,
    /// The leg's place in its entry, from 0.
    pub(super) seq: i64,
    pub(super) account: String,
    pub(super) asset: &'l str,
    pub(super) bucket: &'static str,
    pub(super) amount: i64,
    pub(super) hold_id: Option<&'l str>,
}

impl<'l> PostingRow<'l> {
    /// Binds the row's columns after its entry id (seq, account, asset, bucket, amount,
    /// hold); their placeholders in that order.
    pub(super) fn bind_after_entry(self, params: &mut Params<'l>) -> Result<[Placeholder; 6], sqlx::Error> {
        Ok([
            params.push(self.seq)?,
            params.push(self.account)?,
            params.push(self.asset)?,
            params.push(self.bucket)?,
            params.push(self.amount)?,
            params.push(self.hold_id)?,
        ])
    }

    /// Binds every column, entry id first; the `VALUES` row.
    pub(super) fn bind(self, params: &mut Params<'l>) -> Result<String, sqlx::Error> {
        let entry_id = params.push(self.entry_id)?;
        Ok(tuple(&[[entry_id].as_slice(), &self.bind_after_entry(params)?].concat()))
    }
}

/// A JSON array in column order (`value ->> 0` is the entry id), for `json_each`.
impl serde::Serialize for PostingRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (self.entry_id, self.seq, &self.account, self.asset, self.bucket, self.amount, self.hold_id)
            .serialize(serializer)
    }
}

/// The postings rows of entry `entry_id`, one per leg, numbered by leg order (every write
/// path records them alike).
pub(super) fn posting_rows<'l>(entry_id: &'l str, legs: &'l [Leg]) -> impl Iterator<Item = PostingRow<'l>> {
    (0_i64..).zip(legs).map(move |(seq, leg)| PostingRow {
        entry_id,
        seq,
        account: leg.account.key(),
        asset: leg.asset.as_str(),
        bucket: leg.bucket.as_str(),
        amount: leg.amount,
        hold_id: leg.hold_id.as_ref().map(|hold| hold.as_str()),
    })
}

/// The SQL names of the columns of [`bind_moves`]' rows.
pub(super) const MOVE_COLUMNS: &str =
    "account, asset, available, frozen, available_low, available_high, frozen_low, frozen_high, n";

/// Binds one `VALUES` row per balance move, numbered in order: account, asset, available
/// and frozen deltas, their bounds on the balance before the move (those of the
/// transaction path's conditional UPDATE), the number. Returns the rows, comma-separated.
pub(super) fn bind_moves<'q>(
    params: &mut Params<'q>,
    deltas: impl IntoIterator<Item = &'q BalanceDelta>,
) -> Result<String, sqlx::Error> {
    let mut rows = Vec::new();
    for (order, delta) in (0_i64..).zip(deltas) {
        let (available_low, available_high) = delta.available_range();
        let (frozen_low, frozen_high) = delta.frozen_range();
        let mut row = vec![params.push(delta.account.key())?, params.push(delta.asset.as_str())?];
        row.extend(params.push_each([
            delta.available,
            delta.frozen,
            available_low,
            available_high,
            frozen_low,
            frozen_high,
            order,
        ])?);
        rows.push(tuple(&row));
    }
    Ok(rows.join(", "))
}

/// A count as a bind parameter (saturating: no statement binds that many rows).
pub(super) fn count(rows: usize) -> i64 {
    i64::try_from(rows).unwrap_or(i64::MAX)
}
