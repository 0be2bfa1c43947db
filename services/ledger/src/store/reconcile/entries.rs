//! One chunk of the entries phase (docs/ledger.md, "Reconciliation"): the postings of the
//! next entries by id (at most `postings`, cut at an entry's boundary), each entry's
//! postings summed per asset, exactly; an entry whose postings of an asset do not sum to
//! zero is an `AssetNotZeroSum` finding with its id. Together with the balances phase
//! (every row equals its postings) this is the per-asset zero-sum check, without summing
//! every balance at one instant. An entry committed during a pass with an id before the
//! pass's position is left to the next pass (and to the incremental check).

use std::collections::BTreeMap;

use economy_kit::db::LongRead;

use super::position::Position;
use super::{Chunk, Limits, asset};
use crate::domain::LedgerError;
use crate::domain::reconcile::asset_total;

/// Postings of the entries after an id, in entry order.
pub(super) const POSTINGS_AFTER: &str =
    "SELECT entry_id, asset_code, amount FROM postings WHERE entry_id > $1 ORDER BY entry_id, seq LIMIT $2";
/// The postings of one entry.
pub(super) const POSTINGS_OF: &str =
    "SELECT entry_id, asset_code, amount FROM postings WHERE entry_id = $1 ORDER BY seq";

/// `(entry_id, asset_code, amount)`.
type Posting = (String, String, i64);

/// Checks the entries after `after`. Errors: storage, and corrupt asset codes.
pub(super) async fn check(read: &mut LongRead, limits: &Limits, after: &str) -> Result<Chunk, LedgerError> {
    let mut postings: Vec<Posting> =
        sqlx::query_as(POSTINGS_AFTER).bind(after).bind(limits.postings + 1).fetch_all(&mut *read).await?;
    let complete = postings.len() as i64 <= limits.postings;
    if !complete {
        let cut_entry = postings.last().map(|(id, ..)| id.clone()).unwrap_or_default();
        postings.retain(|(id, ..)| *id != cut_entry);
        if postings.is_empty() {
            postings = sqlx::query_as(POSTINGS_OF).bind(cut_entry.as_str()).fetch_all(&mut *read).await?;
        }
    }
    let mut chunk = Chunk::default();
    let mut sums: BTreeMap<(&str, &str), i128> = BTreeMap::new();
    for (entry, code, amount) in &postings {
        *sums.entry((entry.as_str(), code.as_str())).or_default() += i128::from(*amount);
    }
    for ((entry, code), sum) in sums {
        chunk.findings.extend(asset_total(asset(code)?, sum, Some(entry)));
    }
    let mut ids: Vec<&str> = postings.iter().map(|(id, ..)| id.as_str()).collect();
    ids.dedup();
    chunk.entries_checked = ids.len() as i64;
    chunk.next = Some(match (complete, ids.last()) {
        (false, Some(last)) => Position::Entries { after: (*last).to_owned() },
        _ => Position::Totals,
    });
    Ok(chunk)
}
