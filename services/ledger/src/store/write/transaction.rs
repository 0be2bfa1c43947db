//! The write path: apply a `WritePlan` as one transaction (DESIGN.md §2): claim the
//! idempotency key by inserting the journal entry, resolve holds by compare-and-set on
//! `open`, record the postings, move every balance with one conditional UPDATE (which
//! checks its bounds). Any failure rolls everything back.

use std::collections::BTreeSet;
use std::sync::Arc;

use economy_kit::db::{Writer, is_unique_violation, value_tuples};
use economy_kit::group_commit::{Autocommitted, BatchedWrite, BulkResults, WriteFuture};
use economy_kit::time::now_millis;
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};

use super::LedgerStore;
use super::known::KnownRows;
use super::single;
use crate::domain::LedgerError;
use crate::domain::commands::{NewHold, WritePlan};
use crate::domain::entry::{BalanceDelta, Buckets, Entry, EntryMeta, Leg, balance_deltas, check_balanced};
use crate::domain::hold::{Hold, Resolution, Resolved, resolve_all};
use crate::domain::ids::{AccountId, AssetCode, EntityId, HoldId};

/// The connection a write runs on, inside a transaction someone else commits.
type Tx = AnyConnection;

/// The outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The entry written now, or the original one.
    pub entry: Entry,
    /// True when the key had already been applied with the same fingerprint.
    pub replayed: bool,
}

impl LedgerStore {
    /// Applies `plan` exactly once per idempotency key. The key is claimed by the entry's
    /// INSERT (its UNIQUE index is the replay check: no read before the write).
    ///
    /// Same key + same fingerprint -> the original entry, `replayed`. Same key + other
    /// fingerprint -> `IDEMPOTENCY_KEY_REUSED`. Otherwise every error of the plan
    /// (`INSUFFICIENT_BALANCE`, `HOLD_ALREADY_RESOLVED`, …) leaves nothing behind.
    pub async fn apply(&self, plan: &WritePlan) -> Result<Applied, LedgerError> {
        match self.apply_once(plan).await? {
            Some(entry) => {
                self.known.learn(&entry.legs);
                Ok(Applied { entry, replayed: false })
            }
            // The key was taken (a replay, or a concurrent writer first): the database decided.
            None => {
                self.replay(&plan.meta).await?.ok_or_else(|| LedgerError::Storage("idempotency key vanished".into()))
            }
        }
    }

    /// Applies `plan` in a transaction and commit of its own, never group-committed: the
    /// "raw database" baseline of BENCHMARKS.md (the ledger's statements through sqlx, no
    /// gRPC). `Ok(None)` when the idempotency key was already taken (no replay lookup);
    /// errors as [`LedgerStore::apply`], and a refused plan leaves nothing behind.
    pub async fn apply_unbatched(&self, plan: &WritePlan) -> Result<Option<Entry>, LedgerError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let entry = write_entry(&mut tx, plan, now_millis(), &self.known).await?;
        if let Some(entry) = &entry {
            let committed = tx.commit().await;
            writer.finish(committed)?;
            self.known.learn(&entry.legs);
        }
        Ok(entry)
    }

    /// The entry `meta`'s key applied, if any, as a replay (`IDEMPOTENCY_KEY_REUSED` when
    /// it was applied to other content). Handlers call it before refusing a write for a
    /// reason of the clock or of current state, so a retry answers from its key first.
    pub async fn replay(&self, meta: &EntryMeta) -> Result<Option<Applied>, LedgerError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT id, fingerprint FROM journal_entries WHERE idempotency_key = $1")
                .bind(meta.key.as_str())
                .fetch_optional(self.db.pool())
                .await?;
        match row {
            None => Ok(None),
            Some((id, fingerprint)) if fingerprint == meta.fingerprint => {
                Ok(Some(Applied { entry: self.entry(&id).await?, replayed: true }))
            }
            Some(_) => Err(LedgerError::IdempotencyKeyReused(meta.key.as_str().to_owned())),
        }
    }

    /// `Ok(None)` when the idempotency key was taken by a concurrent writer. On SQLite the
    /// entry shares its transaction with others queued at the same time (group commit);
    /// on PostgreSQL a plain entry is first tried in a statement shared with the plain
    /// entries queued meanwhile (`combined`), and any other entry, or a plain one that
    /// statement left, goes alone (`single` when `EntryWrite::is_bulk`, else or when that
    /// leaves it undecided a transaction of its own).
    async fn apply_once(&self, plan: &WritePlan) -> Result<Option<Entry>, LedgerError> {
        let write = EntryWrite { plan: plan.clone(), known: Arc::clone(&self.known) };
        let shared = match self.plain.as_ref().filter(|_| write.is_plain()) {
            Some(plain) => plain.submit(write.clone()).await,
            None => None,
        };
        // No shared statement, or its flush failed to answer (a panic): the entry goes alone;
        // its key makes a second attempt a replay.
        let submitted = match shared {
            Some(submitted) => submitted,
            None => self.entries.submit(write).await,
        };
        match submitted? {
            Ok(entry) => Ok(Some(entry)),
            Err(Refusal::KeyTaken) => Ok(None),
            Err(Refusal::Refused(error)) => Err(error),
        }
    }
}

/// One `WritePlan` for the group committer.
#[derive(Debug, Clone)]
pub(super) struct EntryWrite {
    pub(super) plan: WritePlan,
    pub(super) known: Arc<KnownRows>,
}

/// Why an [`EntryWrite`] wrote nothing.
#[derive(Debug)]
pub(super) enum Refusal {
    /// A concurrent writer committed the same idempotency key first.
    KeyTaken,
    /// The plan was refused (balance, hold, catalog, storage).
    Refused(LedgerError),
}

impl EntryWrite {
    /// True when the SQLite bulk form (`bulk`) and PostgreSQL's one-statement form
    /// (`single`) can apply this write: no hold to open, and every asset and account of its
    /// legs already known to exist (a hold's own are, since it exists).
    pub(super) fn is_bulk(&self) -> bool {
        self.plan.new_hold.is_none() && self.has_known_legs()
    }

    /// True when the write is a plain movement: [`EntryWrite::is_bulk`] and no hold to
    /// resolve (PostgreSQL's `combined` form).
    pub(super) fn is_plain(&self) -> bool {
        self.is_bulk() && self.plan.resolutions.is_empty()
    }

    fn has_known_legs(&self) -> bool {
        self.plan
            .legs
            .iter()
            .all(|leg| self.known.has_asset(leg.asset.as_str()) && self.known.has_account(&leg.account.key()))
    }

    /// The write's legs followed by those that empty the holds it resolves at `now` (ms),
    /// and those holds ([`resolve_all`]; `hold` gives each hold as it stands).
    pub(super) fn resolve<'h>(
        &self,
        now: i64,
        hold: impl FnMut(&HoldId) -> Result<&'h Hold, LedgerError>,
    ) -> Result<(Vec<Leg>, Vec<Resolved>), LedgerError> {
        let (hold_legs, resolved) = resolve_all(&self.plan.resolutions, now, hold)?;
        Ok(([self.plan.legs.as_slice(), &hold_legs].concat(), resolved))
    }

    /// The write's journal entry with `legs`, under a new id, recorded at `now` (ms).
    pub(super) fn entry(&self, now: i64, legs: Vec<Leg>) -> Entry {
        Entry::new(EntityId::generate().to_string(), &self.plan.meta, now, legs)
    }
}

impl BatchedWrite for EntryWrite {
    type Output = Entry;
    type Refusal = Refusal;

    fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<Entry, Refusal>> {
        Box::pin(async move {
            match write_entry(conn, &self.plan, now_millis(), &self.known).await {
                Ok(Some(entry)) => Ok(entry),
                Ok(None) => Err(Refusal::KeyTaken),
                Err(error) => Err(Refusal::Refused(error)),
            }
        })
    }

    fn write_batch<'c>(batch: &'c [Self], conn: &'c mut AnyConnection) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(super::bulk::write_entries(batch, conn))
    }

    fn commit_batch<'c>(batch: &'c [Self], writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(super::bulk::commit_entries(batch, writer))
    }

    fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
        Box::pin(async move {
            if !self.is_bulk() {
                return Ok(None);
            }
            single::post(writer, self, now_millis()).await
        })
    }
}

/// Writes `plan` as one journal entry inside `tx` (the caller commits): claims the key,
/// resolves holds, checks assets and accounts `known` does not vouch for, records the
/// postings, moves the balances within their bounds. `Ok(None)` when the idempotency key
/// was taken (a replay, or a concurrent writer first).
pub(super) async fn write_entry(
    tx: &mut Tx,
    plan: &WritePlan,
    now: i64,
    known: &KnownRows,
) -> Result<Option<Entry>, LedgerError> {
    let entry_id = EntityId::generate();
    match insert_entry(tx, entry_id.as_str(), &plan.meta, now).await {
        Err(error) if is_unique_violation(&error) => return Ok(None),
        other => other?,
    }
    let mut legs = plan.legs.clone();
    for (hold_id, resolution) in &plan.resolutions {
        legs.extend(resolve_hold(tx, hold_id, *resolution, entry_id.as_str(), now).await?);
    }
    check_balanced(&legs)?;
    ensure_assets(tx, &legs, known).await?;
    ensure_accounts(tx, &legs, now, known).await?;
    if let Some(hold) = &plan.new_hold {
        insert_hold(tx, hold, &plan.meta, now).await?;
    }
    // Postings first: the balance rows' locks (PostgreSQL) are then held only until the
    // commit, which keeps a hot account's queue short.
    insert_postings(tx, entry_id.as_str(), &legs).await?;
    for delta in balance_deltas(&legs)? {
        apply_delta(tx, &delta, now).await?;
    }
    Ok(Some(Entry::new(entry_id.to_string(), &plan.meta, now, legs)))
}

async fn insert_entry(tx: &mut Tx, id: &str, meta: &EntryMeta, now: i64) -> Result<(), sqlx::Error> {
    sqlx::query_with(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        entry_arguments(id, meta, now)?,
    )
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// `$1..$8` of a journal entry row: id, idempotency key, fingerprint, business type,
/// correlation id, memo, actor, created at (ms).
pub(super) fn entry_arguments<'q>(id: &'q str, meta: &'q EntryMeta, now: i64) -> Result<AnyArguments<'q>, sqlx::Error> {
    let mut arguments = AnyArguments::default();
    add_entry(&mut arguments, id, meta, now)?;
    Ok(arguments)
}

/// Appends the eight journal-entry columns of [`entry_arguments`] to `arguments`.
pub(super) fn add_entry<'q>(
    arguments: &mut AnyArguments<'q>,
    id: &'q str,
    meta: &'q EntryMeta,
    now: i64,
) -> Result<(), sqlx::Error> {
    let texts =
        [id, meta.key.as_str(), &meta.fingerprint, &meta.business_type, &meta.correlation_id, &meta.memo, &meta.actor];
    for text in texts {
        arguments.add(text).map_err(sqlx::Error::Encode)?;
    }
    arguments.add(now).map_err(sqlx::Error::Encode)
}

/// Claims an open hold for `resolution` at `now` and returns the legs that empty its
/// frozen part.
async fn resolve_hold(
    tx: &mut Tx,
    hold_id: &HoldId,
    resolution: Resolution,
    entry_id: &str,
    now: i64,
) -> Result<Vec<Leg>, LedgerError> {
    let hold = super::read::hold_in(&mut *tx, hold_id.as_str())
        .await?
        .ok_or_else(|| LedgerError::HoldNotFound(hold_id.to_string()))?;
    let (settled, legs) = resolution.resolve(&hold, hold.status, now)?;
    let claimed = sqlx::query(
        "UPDATE holds SET status = $1, settled_amount = $2, resolved_at = $3, resolution_entry_id = $4 \
         WHERE id = $5 AND status = 'open'",
    )
    .bind(resolution.status().as_str())
    .bind(settled)
    .bind(now)
    .bind(entry_id)
    .bind(hold_id.as_str())
    .execute(&mut *tx)
    .await?;
    if claimed.rows_affected() == 0 {
        return Err(LedgerError::HoldAlreadyResolved { hold_id: hold_id.to_string(), status: "resolved" });
    }
    Ok(legs)
}

async fn ensure_assets(tx: &mut Tx, legs: &[Leg], known: &KnownRows) -> Result<(), LedgerError> {
    let assets: BTreeSet<&AssetCode> =
        legs.iter().map(|leg| &leg.asset).filter(|asset| !known.has_asset(asset.as_str())).collect();
    for asset in assets {
        let found = sqlx::query("SELECT code FROM assets WHERE code = $1")
            .bind(asset.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Err(LedgerError::AssetNotFound(asset.to_string()));
        }
    }
    Ok(())
}

/// User accounts are created on first use; system accounts must be configured.
async fn ensure_accounts(tx: &mut Tx, legs: &[Leg], now: i64, known: &KnownRows) -> Result<(), LedgerError> {
    let accounts: BTreeSet<&AccountId> =
        legs.iter().map(|leg| &leg.account).filter(|account| !known.has_account(&account.key())).collect();
    for account in accounts {
        match account.user() {
            Some(user) => {
                sqlx::query("INSERT INTO accounts (account, user_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (account) DO NOTHING")
                    .bind(account.key())
                    .bind(user.get())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                let found = sqlx::query("SELECT account FROM accounts WHERE account = $1")
                    .bind(account.key())
                    .fetch_optional(&mut *tx)
                    .await?;
                if found.is_none() {
                    return Err(LedgerError::AccountNotFound(account.key()));
                }
            }
        }
    }
    Ok(())
}

async fn insert_hold(tx: &mut Tx, hold: &NewHold, meta: &EntryMeta, now: i64) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO holds (id, idempotency_key, account, asset_code, amount, settled_amount, status, reference, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0, 'open', $6, $7, $8)",
    )
    .bind(hold.id.as_str())
    .bind(meta.key.as_str())
    .bind(hold.account.key())
    .bind(hold.asset.as_str())
    .bind(hold.amount.get())
    .bind(&hold.reference)
    .bind(hold.expires_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Moves one balance with a conditional UPDATE whose bounds keep it within its floor and
/// i64; a missing row is inserted (racing inserts retry the UPDATE once).
async fn apply_delta(tx: &mut Tx, delta: &BalanceDelta, now: i64) -> Result<(), LedgerError> {
    for _ in 0..2 {
        if update_balance(tx, delta, now).await? {
            return Ok(());
        }
        let current: Option<(i64, i64)> =
            sqlx::query_as("SELECT available, frozen FROM balances WHERE account = $1 AND asset_code = $2")
                .bind(delta.account.key())
                .bind(delta.asset.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if let Some((available, frozen)) = current {
            // Under READ COMMITTED the row may have been created by a concurrent writer
            // after the UPDATE looked: when it is within bounds, the UPDATE is retried.
            let current = Buckets { available, frozen };
            if delta.fits(current) {
                continue;
            }
            return Err(delta.refusal(current));
        }
        delta.apply_to(Buckets::default())?;
        let inserted = sqlx::query(
            "INSERT INTO balances (account, asset_code, available, frozen, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (account, asset_code) DO NOTHING",
        )
        .bind(delta.account.key())
        .bind(delta.asset.as_str())
        .bind(delta.available)
        .bind(delta.frozen)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(());
        }
    }
    Err(LedgerError::Storage(format!("balance {}/{} is contended", delta.account, delta.asset)))
}

async fn update_balance(tx: &mut Tx, delta: &BalanceDelta, now: i64) -> Result<bool, LedgerError> {
    let (available_low, available_high) = delta.available_range();
    let (frozen_low, frozen_high) = delta.frozen_range();
    let updated = sqlx::query(
        "UPDATE balances SET available = available + $1, frozen = frozen + $2, updated_at = $3 \
         WHERE account = $4 AND asset_code = $5 AND available BETWEEN $6 AND $7 AND frozen BETWEEN $8 AND $9",
    )
    .bind(delta.available)
    .bind(delta.frozen)
    .bind(now)
    .bind(delta.account.key())
    .bind(delta.asset.as_str())
    .bind(available_low)
    .bind(available_high)
    .bind(frozen_low)
    .bind(frozen_high)
    .execute(&mut *tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Records the postings of one entry (at most 100 legs: 700 parameters), numbered by leg
/// order.
async fn insert_postings(tx: &mut Tx, entry_id: &str, legs: &[Leg]) -> Result<(), sqlx::Error> {
    if legs.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO postings (entry_id, seq, account, asset_code, bucket, amount, hold_id) VALUES {}",
        value_tuples(legs.len(), 7)
    );
    let mut query = sqlx::query(&sql);
    for (entry_id, seq, account, asset, bucket, amount, hold) in posting_rows(entry_id, legs) {
        query = query.bind(entry_id).bind(seq).bind(account).bind(asset).bind(bucket).bind(amount).bind(hold);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}

/// A `postings` row: `(entry id, seq, account, asset, bucket, amount, hold)`.
pub(super) type PostingRow<'l> = (&'l str, i64, String, &'l str, &'static str, i64, Option<&'l str>);

/// The postings rows of entry `entry_id`, one per leg, numbered by leg order (every write
/// path records them alike).
pub(super) fn posting_rows<'l>(entry_id: &'l str, legs: &'l [Leg]) -> impl Iterator<Item = PostingRow<'l>> {
    (0_i64..).zip(legs).map(move |(seq, leg)| {
        let hold = leg.hold_id.as_ref().map(|hold| hold.as_str());
        (entry_id, seq, leg.account.key(), leg.asset.as_str(), leg.bucket.as_str(), leg.amount, hold)
    })
}
