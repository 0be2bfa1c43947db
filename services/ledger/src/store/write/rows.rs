//! The rows every write path records alike (a journal entry, its postings numbered by leg
//! order, its balance moves) and their bind parameters, numbered by [`Params`] as they are
//! bound.

use economy_kit::db::params::{Params, Placeholder, tuple};

use crate::domain::entry::{BalanceDelta, Entry, EntryMeta};

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
    /// The balance after the whole entry (`Entry::balances`; zeros and 0 while the entry
    /// has none: the PostgreSQL statements take them from the balance UPDATE instead).
    pub(super) available_after: i64,
    pub(super) frozen_after: i64,
    pub(super) balance_seq: i64,
    /// The entry's instant (ms), which the posting repeats for the as-of look-ups
    /// (docs/ledger.md, "Balances at an instant").
    pub(super) created_at: i64,
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

    /// Binds the entry id, the columns of [`PostingRow::bind_after_entry`] and `number`
    /// (the balance move the row belongs to) instead of the balance after; the `VALUES`
    /// row.
    pub(super) fn bind_numbered(self, params: &mut Params<'l>, number: i64) -> Result<String, sqlx::Error> {
        let entry_id = params.push(self.entry_id)?;
        let columns = self.bind_after_entry(params)?;
        Ok(tuple(&[[entry_id].as_slice(), &columns, &[params.push(number)?]].concat()))
    }

    /// Binds every column in [`POSTING_COLUMNS`] order; the `VALUES` row.
    pub(super) fn bind_all(self, params: &mut Params<'l>) -> Result<String, sqlx::Error> {
        let after = [self.available_after, self.frozen_after, self.balance_seq, self.created_at];
        let entry_id = params.push(self.entry_id)?;
        let columns = self.bind_after_entry(params)?;
        Ok(tuple(&[[entry_id].as_slice(), &columns, &params.push_each(after)?].concat()))
    }
}

/// Every column of a `postings` row, in the order of [`PostingRow::bind_all`] and of its
/// JSON form.
pub(super) const POSTING_COLUMNS: &str = "entry_id, seq, account, asset_code, bucket, amount, hold_id, available_after, frozen_after, balance_seq, \
     created_at";

/// A JSON array in [`POSTING_COLUMNS`] order (`value ->> 0` is the entry id), for
/// `json_each`.
impl serde::Serialize for PostingRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (
            self.entry_id,
            self.seq,
            &self.account,
            self.asset,
            self.bucket,
            self.amount,
            self.hold_id,
            self.available_after,
            self.frozen_after,
            self.balance_seq,
            self.created_at,
        )
            .serialize(serializer)
    }
}

/// The postings rows of `entry`, one per leg, numbered by leg order, each with the
/// entry's resulting balance of its account and asset (every write path records them
/// alike).
pub(super) fn posting_rows(entry: &Entry) -> impl Iterator<Item = PostingRow<'_>> {
    (0_i64..).zip(&entry.legs).map(move |(seq, leg)| {
        let after = entry.balance_after(&leg.account, &leg.asset);
        PostingRow {
            entry_id: &entry.id,
            seq,
            account: leg.account.key(),
            asset: leg.asset.as_str(),
            bucket: leg.bucket.as_str(),
            amount: leg.amount,
            hold_id: leg.hold_id.as_ref().map(|hold| hold.as_str()),
            available_after: after.map_or(0, |after| after.available),
            frozen_after: after.map_or(0, |after| after.frozen),
            balance_seq: after.map_or(0, |after| after.seq),
            created_at: entry.created_at,
        }
    })
}

/// A query taking, on PostgreSQL, a transaction-scoped advisory lock on each distinct
/// balance of `source` (a relation with `account` and `asset` columns) in key order, and
/// answering how many (docs/streams.md, "Order on PostgreSQL"). Every write path takes
/// them before the transaction's first write, which gives the transaction its id, the
/// entry's stream position: a writer waiting for a balance takes its id only after the
/// one before it on that balance committed, so each balance's entries stream in the
/// order they moved it. Advisory locks take no transaction id; a fixed key order keeps
/// them from deadlocking.
pub(super) fn balance_locks(source: &str) -> String {
    format!(
        "SELECT COUNT(*) AS n FROM (SELECT pg_advisory_xact_lock(k) FROM \
         (SELECT DISTINCT hashtextextended(account || ' ' || asset, 0) AS k FROM {source}) AS keys ORDER BY k) AS taken"
    )
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
