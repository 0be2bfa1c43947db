//! One chunk of the balances phase (docs/ledger.md, "Reconciliation"): in one snapshot,
//! the next balance rows after the position (at most `balances`) and the postings after
//! it up to the last of those rows (at most `postings`, cut at an entry's boundary on a
//! balance), then each balance whose postings were all read is checked against its row
//! and open holds. A balance with more postings than a chunk holds is read over several
//! chunks, its running balance carried in the position; its row is compared in the
//! snapshot that reads its last postings.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use economy_kit::db::{Backend, LongRead};

use super::position::{Key, Position};
use super::{Chunk, Limits, account, asset};
use crate::domain::LedgerError;
use crate::domain::reconcile::{BalanceSums, EntryPostings, Finding, RunningBalance, orphan_postings, unposted_seq};

/// Balance rows from a key on (`>=`), or after it (`>`), in key order.
pub(super) const ROWS_FROM: &str = "SELECT account, asset_code, available, frozen, seq FROM balances \
     WHERE (account, asset_code) >= ($1, $2) ORDER BY account, asset_code LIMIT $3";
pub(super) const ROWS_AFTER: &str = "SELECT account, asset_code, available, frozen, seq FROM balances \
     WHERE (account, asset_code) > ($1, $2) ORDER BY account, asset_code LIMIT $3";

/// Postings after `(account, asset, balance_seq)` in running order, without and with an
/// upper balance key: the order of `postings_by_balance_seq`, so a chunk reads no more
/// of it than it returns (each version's postings are put in entry order in memory).
pub(super) const POSTINGS_AFTER: &str = "SELECT account, asset_code, entry_id, bucket, amount, available_after, \
     frozen_after, balance_seq FROM postings WHERE (account, asset_code, balance_seq) > ($1, $2, $3) \
     ORDER BY account, asset_code, balance_seq LIMIT $4";
pub(super) const POSTINGS_BETWEEN: &str = "SELECT account, asset_code, entry_id, bucket, amount, available_after, \
     frozen_after, balance_seq FROM postings WHERE (account, asset_code, balance_seq) > ($1, $2, $3) \
     AND (account, asset_code) <= ($4, $5) ORDER BY account, asset_code, balance_seq LIMIT $6";

/// The postings of one version of a balance.
pub(super) const POSTINGS_AT: &str = "SELECT account, asset_code, entry_id, bucket, amount, available_after, \
     frozen_after, balance_seq FROM postings WHERE account = $1 AND asset_code = $2 AND balance_seq = $3 \
     ORDER BY entry_id, seq";

/// The open holds of the accounts from one on (`$1`), with a last one (`$2`) when
/// `bounded`, through `holds_open_by_balance` (SQLite's planner would otherwise take the
/// status index and read every open hold).
pub(super) fn holds_sql(backend: Backend, bounded: bool) -> String {
    let index = if backend == Backend::Sqlite { " INDEXED BY holds_open_by_balance" } else { "" };
    let upper = if bounded { " AND account <= $2" } else { "" };
    format!("SELECT account, asset_code, amount FROM holds{index} WHERE status = 'open' AND account >= $1{upper}")
}

/// A balance row: available, frozen, seq.
type Row = (i64, i64, i64);

/// A posting as the running check reads it.
#[derive(sqlx::FromRow)]
struct Posting {
    account: String,
    asset_code: String,
    entry_id: String,
    bucket: String,
    amount: i64,
    available_after: i64,
    frozen_after: i64,
    balance_seq: i64,
}

impl Posting {
    fn key(&self) -> Key {
        (self.account.clone(), self.asset_code.clone())
    }

    fn is_at(&self, key: &Key, seq: i64) -> bool {
        self.account == key.0 && self.asset_code == key.1 && self.balance_seq == seq
    }

    /// Adds this posting to `entry` when it is of the same entry at the same version;
    /// `false` otherwise.
    fn add_to(&self, entry: &mut EntryPostings) -> bool {
        if self.entry_id != entry.entry_id || self.balance_seq != entry.balance_seq {
            return false;
        }
        match self.bucket.as_str() {
            "frozen" => entry.frozen += i128::from(self.amount),
            _ => entry.available += i128::from(self.amount),
        }
        entry.afters.push((self.available_after, self.frozen_after));
        true
    }

    fn start(&self) -> EntryPostings {
        let mut entry = EntryPostings {
            entry_id: self.entry_id.clone(),
            balance_seq: self.balance_seq,
            available: 0,
            frozen: 0,
            afters: Vec::new(),
        };
        self.add_to(&mut entry);
        entry
    }
}

/// Where a chunk ends.
enum End {
    /// Every balance up to this key, its row included.
    Through(Key),
    /// Every balance before this key, and its postings up to this version.
    Within(Key, i64),
    /// Every balance: the phase is over.
    Last,
}

impl End {
    /// Whether the balance `key` is complete in the chunk.
    fn completes(&self, key: &Key) -> bool {
        match self {
            Self::Through(last) => key <= last,
            Self::Within(open, _) => key < open,
            Self::Last => true,
        }
    }
}

/// What a chunk read, in one snapshot.
struct Snapshot {
    rows: BTreeMap<Key, Row>,
    postings: Vec<Posting>,
    holds: BTreeMap<Key, i128>,
    end: End,
}

/// Checks the chunk of balances after `(from, seq)` (`chain`: where the balance `from`
/// stands when its postings were cut). Errors: storage, and corrupt keys.
pub(super) async fn check(
    read: &mut LongRead,
    backend: Backend,
    limits: &Limits,
    from: Key,
    seq: i64,
    chain: Option<crate::domain::reconcile::ChainState>,
) -> Result<Chunk, LedgerError> {
    let snapshot = read_snapshot(read, backend, limits, &from, seq).await?;
    let mut chunk = Chunk::default();
    let mut chains: BTreeMap<Key, RunningBalance> = BTreeMap::new();
    if let Some(state) = chain {
        chains.insert(from.clone(), RunningBalance::from_state(account(&from.0)?, asset(&from.1)?, state));
    }
    run_chains(&snapshot.postings, &mut chains)?;
    let mut keys: Vec<&Key> = snapshot.rows.keys().chain(chains.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut open = None;
    for key in keys {
        let running = chains.get(key).cloned();
        if snapshot.end.completes(key) {
            let holds = snapshot.holds.get(key).copied().unwrap_or(0);
            chunk.findings.extend(balance_findings(key, snapshot.rows.get(key).copied(), running, holds)?);
            chunk.balances_checked += i64::from(snapshot.rows.contains_key(key));
        } else if let (true, Some(running)) = (key_is_open(&snapshot.end, key), running) {
            open = Some(running.state());
            chunk.findings.extend(running.into_findings());
        }
    }
    chunk.next = Some(match snapshot.end {
        End::Through(last) => Position::after_balance(last),
        End::Within((account, asset), seq) => Position::Balances { account, asset, seq, chain: open },
        End::Last => Position::Entries { after: String::new() },
    });
    Ok(chunk)
}

fn key_is_open(end: &End, key: &Key) -> bool {
    matches!(end, End::Within(open, _) if open == key)
}

/// Reads the chunk's rows, postings and holds, and where it ends.
async fn read_snapshot(
    read: &mut LongRead,
    backend: Backend,
    limits: &Limits,
    from: &Key,
    seq: i64,
) -> Result<Snapshot, LedgerError> {
    let rows_sql = if seq == i64::MAX { ROWS_AFTER } else { ROWS_FROM };
    let rows: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(rows_sql)
        .bind(from.0.as_str())
        .bind(from.1.as_str())
        .bind(limits.balances)
        .fetch_all(&mut *read)
        .await?;
    let upper: Option<Key> = (rows.len() as i64 >= limits.balances)
        .then(|| rows.last().map(|(account, asset, ..)| (account.clone(), asset.clone())))
        .flatten();
    let mut postings = fetch_postings(read, from, seq, upper.as_ref(), limits.postings + 1).await?;
    let end = cut(&mut postings, limits.postings, upper);
    if let (End::Within(key, seq), true) = (&end, postings.is_empty()) {
        // One entry's postings on one balance fill the chunk: read them whole.
        postings = sqlx::query_as(POSTINGS_AT)
            .bind(key.0.as_str())
            .bind(key.1.as_str())
            .bind(*seq)
            .fetch_all(&mut *read)
            .await?;
    }
    let holds = fetch_holds(read, backend, from, &end).await?;
    let rows =
        rows.into_iter().map(|(account, asset, available, frozen, seq)| ((account, asset), (available, frozen, seq)));
    Ok(Snapshot { rows: rows.collect(), postings, holds, end })
}

async fn fetch_postings(
    read: &mut LongRead,
    (account, asset): &Key,
    seq: i64,
    upper: Option<&Key>,
    limit: i64,
) -> Result<Vec<Posting>, LedgerError> {
    let query = match upper {
        Some((last_account, last_asset)) => sqlx::query_as(POSTINGS_BETWEEN)
            .bind(account.as_str())
            .bind(asset.as_str())
            .bind(seq)
            .bind(last_account.as_str())
            .bind(last_asset.as_str())
            .bind(limit),
        None => sqlx::query_as(POSTINGS_AFTER).bind(account.as_str()).bind(asset.as_str()).bind(seq).bind(limit),
    };
    let mut postings: Vec<Posting> = query.fetch_all(&mut *read).await?;
    // Stable, and the rows of one version are adjacent: only they are reordered.
    postings.sort_by(|a, b| {
        (&a.account, &a.asset_code, a.balance_seq, &a.entry_id).cmp(&(
            &b.account,
            &b.asset_code,
            b.balance_seq,
            &b.entry_id,
        ))
    });
    Ok(postings)
}

/// Drops the postings past `limit`, and those of the version of the balance that the
/// limit cuts; returns where the chunk ends. When that drops them all, the chunk is that
/// one version (left empty here, to be read whole).
fn cut(postings: &mut Vec<Posting>, limit: i64, upper: Option<Key>) -> End {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let Some(first_left_out) = postings.get(limit) else {
        return upper.map_or(End::Last, End::Through);
    };
    let (key, seq) = (first_left_out.key(), first_left_out.balance_seq);
    let kept = postings.iter().take_while(|posting| !posting.is_at(&key, seq)).count();
    postings.truncate(kept);
    End::Within(key, if kept == 0 { seq } else { seq - 1 })
}

/// The open holds summed per balance, for the accounts the chunk covers.
async fn fetch_holds(
    read: &mut LongRead,
    backend: Backend,
    from: &Key,
    end: &End,
) -> Result<BTreeMap<Key, i128>, LedgerError> {
    let last_account = match end {
        End::Through((account, _)) | End::Within((account, _), _) => Some(account.as_str()),
        End::Last => None,
    };
    let sql = holds_sql(backend, last_account.is_some());
    let mut query = sqlx::query_as(&sql).bind(from.0.as_str());
    if let Some(last) = last_account {
        query = query.bind(last);
    }
    let rows: Vec<(String, String, i64)> = query.fetch_all(&mut *read).await?;
    let mut holds = BTreeMap::new();
    for (account, asset, amount) in rows {
        *holds.entry((account, asset)).or_default() += i128::from(amount);
    }
    Ok(holds)
}

/// Runs each balance's chain over its postings, entry by entry.
fn run_chains(postings: &[Posting], chains: &mut BTreeMap<Key, RunningBalance>) -> Result<(), LedgerError> {
    let mut current: Option<(Key, EntryPostings)> = None;
    for posting in postings {
        if let Some((key, entry)) = current.as_mut()
            && posting.account == key.0
            && posting.asset_code == key.1
            && posting.add_to(entry)
        {
            continue;
        }
        if let Some((key, entry)) = current.take() {
            check_entry(chains, &key, &entry)?;
        }
        current = Some((posting.key(), posting.start()));
    }
    if let Some((key, entry)) = current {
        check_entry(chains, &key, &entry)?;
    }
    Ok(())
}

fn check_entry(
    chains: &mut BTreeMap<Key, RunningBalance>,
    key: &Key,
    entry: &EntryPostings,
) -> Result<(), LedgerError> {
    let chain = match chains.entry(key.clone()) {
        Entry::Occupied(chain) => chain.into_mut(),
        Entry::Vacant(slot) => slot.insert(RunningBalance::new(account(&key.0)?, asset(&key.1)?)),
    };
    chain.check(entry);
    Ok(())
}

/// The findings of a complete balance: its row (`None`: no row) against its postings'
/// chain (`None`: no postings) and its open holds.
fn balance_findings(
    key: &Key,
    row: Option<Row>,
    chain: Option<RunningBalance>,
    holds: i128,
) -> Result<Vec<Finding>, LedgerError> {
    let (account, asset) = (account(&key.0)?, asset(&key.1)?);
    let postings = chain.as_ref().map_or(0, RunningBalance::postings_total);
    let mut findings: Vec<Finding> = match row {
        Some((available, frozen, _)) => {
            let sums = BalanceSums {
                account: account.clone(),
                asset: asset.clone(),
                available,
                frozen,
                postings,
                open_holds: holds,
            };
            sums.findings().collect()
        }
        None => orphan_postings(account.clone(), asset.clone(), postings).into_iter().collect(),
    };
    match chain {
        Some(chain) => findings.extend(chain.finish(row)),
        None => findings.extend(unposted_seq(account, asset, row.map_or(0, |(_, _, seq)| seq))),
    }
    Ok(findings)
}
