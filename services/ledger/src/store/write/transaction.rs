//! One journal entry in a transaction the caller commits: claim the idempotency key by
//! inserting the entry, resolve holds by compare-and-set on `open`, check the assets and
//! accounts not yet known to exist, open a hold, move every balance with one conditional
//! UPDATE (which checks its bounds, bumps the balance's version and returns the balance
//! after), then record the postings with those resulting balances. Any failure rolls
//! everything back. Chosen for an entry that opens a hold or touches an asset or account not yet
//! known, for any entry a faster form leaves undecided (it names the refusal), and by the
//! compensation tools, whose audit record shares the entry's transaction.

use std::collections::BTreeSet;

use economy_kit::db::is_unique_violation;
use economy_kit::db::params::{Params, tuple};
use sqlx::AnyConnection;

use super::rows::{POSTING_COLUMNS, balance_locks, bind_entry, posting_rows};
use crate::domain::LedgerError;
use crate::domain::commands::{NewHold, WritePlan};
use crate::domain::entry::{
    BalanceAfter, BalanceDelta, Buckets, Entry, EntryMeta, Leg, balance_deltas, check_balanced,
};
use crate::domain::hold::Resolution;
use crate::domain::ids::{AccountId, AssetCode, EntityId, HoldId};
use crate::store::known::KnownRows;
use crate::store::read::hold_in;

/// The connection a write runs on, inside a transaction someone else commits.
type Tx = AnyConnection;

/// Writes `plan` as one journal entry inside `tx` (the caller commits): claims the key,
/// resolves holds, checks assets and accounts `known` does not vouch for, records the
/// postings, moves the balances within their bounds. `Ok(None)` when the idempotency key
/// was taken (a replay, or a concurrent writer first).
pub(in crate::store) async fn write_entry(
    tx: &mut Tx,
    plan: &WritePlan,
    now: i64,
    known: &KnownRows,
) -> Result<Option<Entry>, LedgerError> {
    if tx.backend_name() == "PostgreSQL" {
        lock_balances(tx, plan).await?;
    }
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
    let mut balances = Vec::new();
    for delta in balance_deltas(&legs)? {
        balances.push(apply_delta(tx, &delta, now).await?);
    }
    // The postings record the balances the UPDATEs returned, so they follow them (one
    // statement more while the balance rows are locked, on PostgreSQL).
    let entry = Entry::new(entry_id.to_string(), &plan.meta, now, legs).with_balances(balances);
    insert_postings(tx, &entry).await?;
    Ok(Some(entry))
}

/// Takes the advisory lock of every balance `plan` moves (its legs' and those of the
/// holds it resolves, read without locking) before the transaction's first write
/// (`rows::balance_locks`; PostgreSQL only).
async fn lock_balances(tx: &mut Tx, plan: &WritePlan) -> Result<(), LedgerError> {
    let mut balances: BTreeSet<(String, &str)> =
        plan.legs.iter().map(|leg| (leg.account.key(), leg.asset.as_str())).collect();
    let mut holds = Vec::new();
    for (hold_id, _) in &plan.resolutions {
        holds.extend(hold_in(&mut *tx, hold_id.as_str()).await?);
    }
    balances.extend(holds.iter().map(|hold| (hold.account.key(), hold.asset.as_str())));
    if balances.is_empty() {
        return Ok(());
    }
    let mut params = Params::numbered();
    let mut rows = Vec::with_capacity(balances.len());
    for (account, asset) in balances {
        rows.push(tuple(&[params.push(account)?, params.push(asset)?]));
    }
    let source = format!("(VALUES {}) AS b (account, asset)", rows.join(", "));
    sqlx::query_with(&balance_locks(&source), params.into_arguments()).execute(&mut *tx).await?;
    Ok(())
}

async fn insert_entry(tx: &mut Tx, id: &str, meta: &EntryMeta, now: i64) -> Result<(), sqlx::Error> {
    let mut params = Params::numbered();
    let row = tuple(&bind_entry(&mut params, id, meta, now)?);
    let sql = format!(
        "INSERT INTO journal_entries (id, idempotency_key, fingerprint, business_type, correlation_id, memo, actor, created_at) \
         VALUES {row}"
    );
    sqlx::query_with(&sql, params.into_arguments()).execute(&mut *tx).await.map(|_| ())
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
    let hold =
        hold_in(&mut *tx, hold_id.as_str()).await?.ok_or_else(|| LedgerError::HoldNotFound(hold_id.to_string()))?;
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
/// i64, one version up; a missing row is inserted at version 1 (racing inserts retry the
/// UPDATE once). Returns the balance after.
async fn apply_delta(tx: &mut Tx, delta: &BalanceDelta, now: i64) -> Result<BalanceAfter, LedgerError> {
    let after = |available: i64, frozen: i64, seq: i64| BalanceAfter {
        account: delta.account.clone(),
        asset: delta.asset.clone(),
        available,
        frozen,
        seq,
    };
    for _ in 0..2 {
        if let Some((available, frozen, seq)) = update_balance(tx, delta, now).await? {
            return Ok(after(available, frozen, seq));
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
            "INSERT INTO balances (account, asset_code, available, frozen, updated_at, seq) \
             VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (account, asset_code) DO NOTHING",
        )
        .bind(delta.account.key())
        .bind(delta.asset.as_str())
        .bind(delta.available)
        .bind(delta.frozen)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(after(delta.available, delta.frozen, 1));
        }
    }
    Err(LedgerError::Storage(format!("balance {}/{} is contended", delta.account, delta.asset).into()))
}

/// The conditional UPDATE of [`apply_delta`]: `(available, frozen, seq)` after it, `None`
/// when the row is missing or out of bounds.
async fn update_balance(tx: &mut Tx, delta: &BalanceDelta, now: i64) -> Result<Option<(i64, i64, i64)>, LedgerError> {
    let (available_low, available_high) = delta.available_range();
    let (frozen_low, frozen_high) = delta.frozen_range();
    let updated = sqlx::query_as(
        "UPDATE balances SET available = available + $1, frozen = frozen + $2, seq = seq + 1, updated_at = $3 \
         WHERE account = $4 AND asset_code = $5 AND available BETWEEN $6 AND $7 AND frozen BETWEEN $8 AND $9 \
         RETURNING available, frozen, seq",
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
    .fetch_optional(&mut *tx)
    .await?;
    Ok(updated)
}

/// Records the postings of `entry` with its resulting balances (ten parameters a leg; an
/// entry has at most a few hundred legs), numbered by leg order.
async fn insert_postings(tx: &mut Tx, entry: &Entry) -> Result<(), sqlx::Error> {
    if entry.legs.is_empty() {
        return Ok(());
    }
    let mut params = Params::numbered();
    let rows: Vec<String> = posting_rows(entry).map(|row| row.bind_all(&mut params)).collect::<Result<_, _>>()?;
    let sql = format!("INSERT INTO postings ({POSTING_COLUMNS}) VALUES {}", rows.join(", "));
    sqlx::query_with(&sql, params.into_arguments()).execute(&mut *tx).await?;
    Ok(())
}
