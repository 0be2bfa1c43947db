//! The compensation tools' writes (docs/operations.md, "Operator tools"): each fix and
//! its audit record (`economy_kit::audit`) commit in ONE transaction, and the record's
//! UNIQUE idempotency key makes a retried fix a replay of the first.

use economy_kit::audit::{self, AuditDraft, AuditError, AuditPage, AuditQuery, AuditRecord};
use sqlx::{Any, Transaction};

use super::LedgerStore;
use super::write::{Applied, write_entry};
use crate::domain::LedgerError;
use crate::domain::commands::WritePlan;
use crate::domain::compensation::{RecalculateBalance, balance_state, expected_balance, hold_state};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{AccountId, AssetCode};

type Tx<'c> = Transaction<'c, Any>;

impl From<AuditError> for LedgerError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::KeyReused(key) => Self::IdempotencyKeyReused(key),
            AuditError::Storage(error) => error.into(),
        }
    }
}

/// A recalculated balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recalculated {
    /// `(available, frozen)` after the fix (the current values when replayed).
    pub balance: (i64, i64),
    /// The audit record.
    pub record: AuditRecord,
    /// True when the key had already been applied.
    pub replayed: bool,
}

/// A force-released hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceReleased {
    /// The hold as it is now.
    pub hold: Hold,
    /// The releasing journal entry (the original one when replayed).
    pub applied: Applied,
    /// The audit record.
    pub record: AuditRecord,
}

impl LedgerStore {
    /// The record `draft`'s key wrote before (replay), `IDEMPOTENCY_KEY_REUSED` when it
    /// wrote another fix, `None` when unused.
    async fn audit_prior(&self, draft: &AuditDraft) -> Result<Option<AuditRecord>, LedgerError> {
        Ok(audit::prior(self.db.pool(), draft).await?)
    }

    /// After losing the key to a concurrent twin: its record, or why the key is taken.
    async fn audit_winner(&self, draft: &AuditDraft) -> Result<AuditRecord, LedgerError> {
        self.audit_prior(draft).await?.ok_or_else(|| LedgerError::IdempotencyKeyReused(draft.idempotency_key.clone()))
    }

    /// `RecalculateBalance`: rewrites the balance of `command` to the values its postings
    /// and open holds give (`domain::compensation::expected_balance`) and writes the audit
    /// record (before / after = the row) in the same transaction. The row is locked first
    /// (a no-op UPDATE), so every writer of this balance either committed before the sums
    /// are read or waits for the fix. Errors: `BALANCE_NOT_FOUND` (no row, posting or
    /// open hold), `BALANCE_OVERFLOW`, `IDEMPOTENCY_KEY_REUSED`.
    pub async fn recalculate_balance(
        &self,
        command: &RecalculateBalance,
        draft: &AuditDraft,
    ) -> Result<Recalculated, LedgerError> {
        if let Some(record) = self.audit_prior(draft).await? {
            let balance = self.balance(&command.account, command.asset.as_str()).await?;
            return Ok(Recalculated { balance, record, replayed: true });
        }
        let (account, asset) = (&command.account, &command.asset);
        let now = self.clock.now_millis();
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let before = lock_balance(&mut tx, account, asset, now).await?;
        let (postings, total) = sum_postings(&mut tx, account, asset).await?;
        let open_holds: (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM holds \
             WHERE account = $1 AND asset_code = $2 AND status = 'open'",
        )
        .bind(account.key())
        .bind(asset.as_str())
        .fetch_one(&mut *tx)
        .await?;
        if before.is_none() && postings == 0 && open_holds.0 == 0 {
            return Err(LedgerError::BalanceNotFound { account: account.clone(), asset: asset.clone() });
        }
        let after = expected_balance(account, asset, total, open_holds.1)?;
        write_balance(&mut tx, account, asset, before.is_some(), after, now).await?;
        let record =
            draft.record(balance_state(account, asset, before), balance_state(account, asset, Some(after)), now);
        if !audit::insert(&mut tx, &record).await? {
            drop(tx);
            let record = self.audit_winner(draft).await?;
            return Ok(Recalculated { balance: self.balance(account, asset.as_str()).await?, record, replayed: true });
        }
        tx.commit().await?;
        Ok(Recalculated { balance: after, record, replayed: false })
    }

    /// `ForceReleaseHold`: applies `plan` (the hold released, a journal entry keyed by the
    /// tool's key) and writes the audit record (before / after = the hold's status) in the
    /// entry's transaction. Errors: `HOLD_NOT_FOUND`, `HOLD_ALREADY_RESOLVED`,
    /// `IDEMPOTENCY_KEY_REUSED` (the key wrote another fix or another entry).
    pub async fn force_release_hold(&self, plan: &WritePlan, draft: &AuditDraft) -> Result<ForceReleased, LedgerError> {
        let hold_id = draft.target_id.as_str();
        if let Some(record) = self.audit_prior(draft).await? {
            return self.force_released(plan, hold_id, record).await;
        }
        let hold = self.hold(hold_id).await?.ok_or_else(|| LedgerError::HoldNotFound(hold_id.to_owned()))?;
        if hold.status != HoldStatus::Open {
            return Err(LedgerError::HoldAlreadyResolved { hold_id: hold_id.to_owned(), status: hold.status.as_str() });
        }
        let now = self.clock.now_millis();
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let Some(entry) = write_entry(&mut tx, plan, now, &self.known).await? else {
            // The key is a journal entry's already: the same fix committed by a twin, or
            // another movement (IDEMPOTENCY_KEY_REUSED from the entry's fingerprint).
            drop(tx);
            self.replay(&plan.meta).await?;
            let record = self.audit_winner(draft).await?;
            return self.force_released(plan, hold_id, record).await;
        };
        // The compare-and-set on `open` in the entry proves the state before.
        let before = hold_state(&hold, HoldStatus::Open.as_str(), None);
        let after = hold_state(&hold, HoldStatus::Released.as_str(), Some(&entry.id));
        let record = draft.record(before, after, now);
        if !audit::insert(&mut tx, &record).await? {
            drop(tx);
            let record = self.audit_winner(draft).await?;
            return self.force_released(plan, hold_id, record).await;
        }
        tx.commit().await?;
        self.appended.committed();
        let hold = self.hold(hold_id).await?.ok_or_else(|| LedgerError::HoldNotFound(hold_id.to_owned()))?;
        Ok(ForceReleased { hold, applied: Applied { entry, replayed: false }, record })
    }

    /// The replay of a forced release: the hold now, the original entry and record.
    async fn force_released(
        &self,
        plan: &WritePlan,
        hold_id: &str,
        record: AuditRecord,
    ) -> Result<ForceReleased, LedgerError> {
        let applied =
            self.replay(&plan.meta).await?.ok_or_else(|| LedgerError::Storage("audited entry vanished".into()))?;
        let hold = self.hold(hold_id).await?.ok_or_else(|| LedgerError::HoldNotFound(hold_id.to_owned()))?;
        Ok(ForceReleased { hold, applied, record })
    }

    /// One page of the ledger's audit records, newest first.
    pub async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, LedgerError> {
        Ok(audit::list(self.db.pool(), query).await?)
    }
}

/// Locks the balance row (a no-op UPDATE takes the row lock on PostgreSQL; SQLite's
/// `BEGIN IMMEDIATE` already serializes writers) and returns `(available, frozen)`, or
/// `None` when there is no row.
async fn lock_balance(
    tx: &mut Tx<'_>,
    account: &AccountId,
    asset: &AssetCode,
    now: i64,
) -> Result<Option<(i64, i64)>, LedgerError> {
    sqlx::query("UPDATE balances SET updated_at = $1 WHERE account = $2 AND asset_code = $3")
        .bind(now)
        .bind(account.key())
        .bind(asset.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(sqlx::query_as("SELECT available, frozen FROM balances WHERE account = $1 AND asset_code = $2")
        .bind(account.key())
        .bind(asset.as_str())
        .fetch_optional(&mut **tx)
        .await?)
}

/// `(count, sum)` of the postings of one balance, both buckets.
async fn sum_postings(tx: &mut Tx<'_>, account: &AccountId, asset: &AssetCode) -> Result<(i64, i64), LedgerError> {
    Ok(sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM postings WHERE account = $1 AND asset_code = $2",
    )
    .bind(account.key())
    .bind(asset.as_str())
    .fetch_one(&mut **tx)
    .await?)
}

/// Overwrites (or, when there was no row, inserts) the balance with `(available, frozen)`
/// and the version of its latest posting (0 without postings; docs/ledger.md, "Resulting
/// balances").
async fn write_balance(
    tx: &mut Tx<'_>,
    account: &AccountId,
    asset: &AssetCode,
    exists: bool,
    (available, frozen): (i64, i64),
    now: i64,
) -> Result<(), LedgerError> {
    let sql = if exists {
        "UPDATE balances SET available = $1, frozen = $2, updated_at = $3, seq = (SELECT COALESCE(MAX(p.balance_seq), 0) \
         FROM postings AS p WHERE p.account = $4 AND p.asset_code = $5) WHERE account = $4 AND asset_code = $5"
    } else {
        "INSERT INTO balances (available, frozen, updated_at, account, asset_code, seq) VALUES ($1, $2, $3, $4, $5, \
         (SELECT COALESCE(MAX(p.balance_seq), 0) FROM postings AS p WHERE p.account = $4 AND p.asset_code = $5))"
    };
    sqlx::query(sql)
        .bind(available)
        .bind(frozen)
        .bind(now)
        .bind(account.key())
        .bind(asset.as_str())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
