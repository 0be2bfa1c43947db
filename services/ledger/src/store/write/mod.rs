//! The ledger's write paths (docs/ledger.md, "Write paths"; ARCHITECTURE.md,
//! "Invariants"). Every path applies a `WritePlan` exactly once per idempotency key (the
//! journal entry's UNIQUE key decides), refuses it leaving nothing behind, and records the
//! same rows ([`rows`]): each posting with its balance after the whole entry and the
//! balance's new version, taken under the balance's row lock (docs/ledger.md,
//! "Resulting balances"), which the written `Entry` carries. They differ in how many
//! round trips and commits an entry costs, and each is chosen by backend and by what the
//! entry does:
//!
//! - [`transaction`]: one entry in a transaction (claim the key, resolve holds, check
//!   assets and accounts, postings, one conditional UPDATE per balance). The path every
//!   other falls back to and the one that names a refusal: an entry that opens a hold or
//!   touches an asset or account not yet known to exist takes it on both backends, and so
//!   does any entry a faster form leaves undecided.
//! - [`sqlite_batch`] (SQLite): the entries queued together share one transaction and one
//!   commit (group commit, `economy_kit::group_commit`) and are decided in memory against
//!   one read of their balances and holds, then written by a few statements that take
//!   their rows as one JSON parameter each.
//! - [`postgres_combined`] (PostgreSQL): plain movements (no hold opened or resolved)
//!   queued together are written by one autocommitted statement; when it does not apply
//!   them all, each goes alone.
//! - [`postgres_statement`] (PostgreSQL): one entry (no hold to open) in one autocommitted
//!   statement; the first try of an entry going alone (a lone plain entry, one the
//!   combined statement left, one that settles or releases holds).
//!
//! PostgreSQL shares WAL flushes between concurrent commits, so its entries are not
//! queued for a shared transaction; SQLite has one writer, so a shared commit is what
//! makes concurrent writes cheap.

mod import;
mod postgres_combined;
mod postgres_statement;
mod rows;
mod sqlite_batch;
mod transaction;

use std::sync::Arc;

use economy_kit::batch::Coalescer;
use economy_kit::db::{Backend, Db, Writer};
use economy_kit::group_commit::{Autocommitted, BatchedWrite, BulkResults, GroupCommit, Submitted, WriteFuture};
use economy_kit::time::{SharedClock, now_millis};
use sqlx::AnyConnection;

use super::LedgerStore;
use super::known::KnownRows;
use crate::domain::LedgerError;
use crate::domain::commands::WritePlan;
use crate::domain::entry::{Entry, EntryMeta, Leg};
use crate::domain::hold::{Hold, Resolved, resolve_all};
use crate::domain::ids::{EntityId, HoldId};

pub(super) use transaction::write_entry;

/// Most journal entries one SQLite commit carries (group commit).
const MAX_ENTRIES_PER_COMMIT: usize = 64;

/// Most plain entries one PostgreSQL statement carries ([`postgres_combined`]); a batch
/// whose bind parameters exceed PostgreSQL's 65,535 (entries of very many legs) fails as a
/// whole and its entries go alone.
const MAX_ENTRIES_PER_STATEMENT: usize = 32;

/// The queue of plain entries for [`postgres_combined`] statements.
pub(super) type PlainQueue = Coalescer<EntryWrite, Submitted<EntryWrite>>;

/// The group committer every entry not written by a combined statement goes through: a
/// shared transaction on SQLite, its own statement or transaction on PostgreSQL.
pub(super) fn group_commit(db: &Db) -> GroupCommit<EntryWrite> {
    GroupCommit::new(db.clone(), MAX_ENTRIES_PER_COMMIT)
}

/// On PostgreSQL, the queue that writes plain entries together ([`postgres_combined`]),
/// sending each entry it cannot write to `entries`; `None` on SQLite.
pub(super) fn plain_queue(db: &Db, entries: &GroupCommit<EntryWrite>) -> Option<PlainQueue> {
    (db.backend() == Backend::Postgres).then(|| {
        let (db, entries) = (db.clone(), entries.clone());
        Coalescer::new(MAX_ENTRIES_PER_STATEMENT, move |batch| {
            postgres_combined::post_batch(db.clone(), entries.clone(), batch)
        })
    })
}

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
                self.appended.committed();
                crate::metrics::entry_written(&entry.business_type);
                Ok(Applied { entry, replayed: false })
            }
            // The key was taken (a replay, or a concurrent writer first): the database decided.
            None => {
                self.replay(&plan.meta).await?.ok_or_else(|| LedgerError::Storage("idempotency key vanished".into()))
            }
        }
    }

    /// Applies `plan` on the [`transaction`] path in a transaction and commit of its own,
    /// never group-committed: the "raw database" baseline of the benchmarks (the ledger's
    /// statements through sqlx, no gRPC; BENCHMARKS.md). `Ok(None)` when the idempotency
    /// key was already taken (no replay lookup); errors as [`LedgerStore::apply`], and a
    /// refused plan leaves nothing behind.
    pub async fn apply_unbatched(&self, plan: &WritePlan) -> Result<Option<Entry>, LedgerError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let entry = write_entry(&mut tx, plan, self.clock.now_millis(), &self.known).await?;
        if let Some(entry) = &entry {
            let committed = tx.commit().await;
            writer.finish(committed)?;
            self.known.learn(&entry.legs);
            self.appended.committed();
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

    /// Chooses the path (see the module docs). `Ok(None)` when the idempotency key was
    /// taken by a concurrent writer. A plain entry on PostgreSQL is first queued for a
    /// [`postgres_combined`] statement; every other entry, or one that statement left,
    /// goes through the group committer: [`sqlite_batch`] or [`transaction`] in a shared
    /// transaction on SQLite; on PostgreSQL [`postgres_statement`] when
    /// [`EntryWrite::has_fast_form`], else or when that leaves it undecided a
    /// [`transaction`] of its own.
    async fn apply_once(&self, plan: &WritePlan) -> Result<Option<Entry>, LedgerError> {
        let write = EntryWrite { plan: plan.clone(), known: Arc::clone(&self.known), clock: self.clock.clone() };
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
    /// The store's clock: the "now" its holds expire by and its entries are stamped with.
    pub(super) clock: SharedClock,
}

/// The "now" (ms) of a batch of writes: their store's clock.
pub(super) fn batch_now(batch: &[EntryWrite]) -> i64 {
    batch.first().map_or_else(now_millis, |write| write.clock.now_millis())
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
    /// True when the faster forms ([`sqlite_batch`], [`postgres_statement`]) can apply
    /// this write: no hold to open, and every asset and account of its legs already known
    /// to exist (a hold's own are, since it exists).
    pub(super) fn has_fast_form(&self) -> bool {
        self.plan.new_hold.is_none() && self.has_known_legs()
    }

    /// True when the write is a plain movement: [`EntryWrite::has_fast_form`] and no
    /// hold to resolve ([`postgres_combined`]).
    pub(super) fn is_plain(&self) -> bool {
        self.has_fast_form() && self.plan.resolutions.is_empty()
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

/// The group committer's hooks: [`transaction`] for a write alone, [`sqlite_batch`] for a
/// batch on SQLite, [`postgres_statement`] for a write alone on PostgreSQL.
impl BatchedWrite for EntryWrite {
    type Output = Entry;
    type Refusal = Refusal;

    fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<Entry, Refusal>> {
        Box::pin(async move {
            match write_entry(conn, &self.plan, self.clock.now_millis(), &self.known).await {
                Ok(Some(entry)) => Ok(entry),
                Ok(None) => Err(Refusal::KeyTaken),
                Err(error) => Err(Refusal::Refused(error)),
            }
        })
    }

    fn write_batch<'c>(batch: &'c [Self], conn: &'c mut AnyConnection) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(sqlite_batch::write_entries(batch, conn))
    }

    fn commit_batch<'c>(batch: &'c [Self], writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>> {
        Box::pin(sqlite_batch::commit_entries(batch, writer))
    }

    fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
        Box::pin(async move {
            if !self.has_fast_form() {
                return Ok(None);
            }
            postgres_statement::post(writer, self, self.clock.now_millis()).await
        })
    }

    fn is_conflict(refusal: &Refusal) -> bool {
        matches!(refusal, Refusal::Refused(LedgerError::Storage(cause)) if cause.is_conflict())
    }
}
