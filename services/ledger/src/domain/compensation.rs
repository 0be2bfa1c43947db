//! The ledger's compensation tools (issue 6, "Compensation tools with audit"): what each
//! one does, its audit draft (action = the tool's canonical operation, target) and the
//! JSON states its audit record keeps before / after. Free of SQL and gRPC.
//!
//! - `RecalculateBalance`: a balance row rewritten to what the ledger's own records say,
//!   the values Reconcile expects: `frozen` = sum of the balance's open holds,
//!   `available` = sum of its postings - `frozen`. No journal entry: postings are the
//!   truth and do not move.
//! - `ForceReleaseHold`: an open hold whose owner is gone, released by a normal journal
//!   entry (the `ReleaseHold` path, business type `HOLD_FORCE_RELEASE`, memo = reason).

use economy_kit::audit::AuditDraft;
use serde::Serialize;
use serde_json::json;

use super::LedgerError;
use super::commands::WritePlan;
use super::entry::{EntryMeta, fingerprint};
use super::hold::{Hold, Resolution};
use super::ids::{AccountId, AssetCode, HoldId, IdempotencyKey};

/// Canonical operation (and audit action) of `RecalculateBalance`.
pub const RECALCULATE_BALANCE: &str = "LEDGER_RECALCULATE_BALANCE";
/// Canonical operation (and audit action) of `ForceReleaseHold`.
pub const FORCE_RELEASE_HOLD: &str = "LEDGER_FORCE_RELEASE_HOLD";
/// Business type of the journal entry of a forced release.
pub const FORCE_RELEASE_BUSINESS_TYPE: &str = "HOLD_FORCE_RELEASE";

/// `RecalculateBalance`: one balance to recompute, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecalculateBalance {
    /// The account (user or system).
    pub account: AccountId,
    /// The asset.
    pub asset: AssetCode,
    /// Why (1-500 characters).
    pub reason: String,
}

impl RecalculateBalance {
    /// `<account key>/<asset>`, e.g. `user:2/POINTS`: the audit target id.
    pub fn target_id(&self) -> String {
        format!("{}/{}", self.account.key(), self.asset)
    }

    /// The audit draft of this fix by `actor` under `key`.
    pub fn draft(&self, key: &IdempotencyKey, actor: &str) -> AuditDraft {
        AuditDraft {
            idempotency_key: key.as_str().to_owned(),
            actor: actor.to_owned(),
            action: RECALCULATE_BALANCE.to_owned(),
            target_type: "balance".to_owned(),
            target_id: self.target_id(),
            reason: self.reason.clone(),
        }
    }
}

/// The expected `(available, frozen)` of a balance whose postings sum to `postings_total`
/// and whose open holds sum to `open_holds` (docs/ledger.md, "Reconciliation").
/// `BALANCE_OVERFLOW` when the difference leaves i64.
pub fn expected_balance(
    account: &AccountId,
    asset: &AssetCode,
    postings_total: i64,
    open_holds: i64,
) -> Result<(i64, i64), LedgerError> {
    let available = postings_total
        .checked_sub(open_holds)
        .ok_or_else(|| LedgerError::BalanceOverflow { account: account.clone(), asset: asset.clone() })?;
    Ok((available, open_holds))
}

/// The audit state of a balance row: `{"account", "asset_code", "available", "frozen"}`,
/// or `null` when there is no row.
pub fn balance_state(account: &AccountId, asset: &AssetCode, row: Option<(i64, i64)>) -> String {
    match row {
        Some((available, frozen)) => json!({
            "account": account.key(),
            "asset_code": asset.as_str(),
            "available": available,
            "frozen": frozen,
        })
        .to_string(),
        None => "null".to_owned(),
    }
}

/// `ForceReleaseHold`: an orphaned open hold to release, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForceReleaseHold {
    /// The hold.
    pub hold: HoldId,
    /// Why (1-500 characters), also the entry's memo.
    pub reason: String,
}

impl ForceReleaseHold {
    /// The audit draft of this fix by `actor` under `key`.
    pub fn draft(&self, key: &IdempotencyKey, actor: &str) -> AuditDraft {
        AuditDraft {
            idempotency_key: key.as_str().to_owned(),
            actor: actor.to_owned(),
            action: FORCE_RELEASE_HOLD.to_owned(),
            target_type: "hold".to_owned(),
            target_id: self.hold.to_string(),
            reason: self.reason.clone(),
        }
    }

    /// The journal entry: the hold released (status `released`), keyed by the tool's
    /// own idempotency key.
    pub fn plan(&self, key: IdempotencyKey, actor: &str) -> WritePlan {
        let meta = EntryMeta {
            fingerprint: fingerprint("FORCE_RELEASE_HOLD", actor, self),
            key,
            business_type: FORCE_RELEASE_BUSINESS_TYPE.to_owned(),
            correlation_id: String::new(),
            memo: self.reason.clone(),
            actor: actor.to_owned(),
        };
        WritePlan {
            meta,
            legs: Vec::new(),
            new_hold: None,
            resolutions: vec![(self.hold.clone(), Resolution::Release)],
        }
    }
}

/// The audit state of a hold: `{"hold_id", "status", "account", "asset_code", "amount",
/// "reference"}`, plus `resolution_entry_id` once resolved by this fix.
pub fn hold_state(hold: &Hold, status: &str, resolution_entry_id: Option<&str>) -> String {
    let mut state = json!({
        "hold_id": hold.id.as_str(),
        "status": status,
        "account": hold.account.key(),
        "asset_code": hold.asset.as_str(),
        "amount": hold.amount,
        "reference": hold.reference,
    });
    if let (Some(entry), Some(object)) = (resolution_entry_id, state.as_object_mut()) {
        object.insert("resolution_entry_id".to_owned(), json!(entry));
    }
    state.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hold::HoldStatus;
    use crate::domain::ids::{Code, EntityId, UserId};

    fn user(id: i64) -> AccountId {
        AccountId::User(UserId::parse(id).expect("user"))
    }

    #[test]
    fn expected_balance_is_postings_minus_open_holds() -> Result<(), LedgerError> {
        let points = Code::parse("POINTS").expect("code");
        assert_eq!(expected_balance(&user(2), &points, 1000, 150)?, (850, 150));
        assert!(matches!(expected_balance(&user(2), &points, i64::MIN, 1), Err(LedgerError::BalanceOverflow { .. })));
        Ok(())
    }

    #[test]
    fn states_are_json_objects() {
        let points = Code::parse("POINTS").expect("code");
        let state: serde_json::Value =
            serde_json::from_str(&balance_state(&user(2), &points, Some((5, 1)))).expect("json");
        assert_eq!(state["account"], "user:2");
        assert_eq!((state["available"].as_i64(), state["frozen"].as_i64()), (Some(5), Some(1)));
        assert_eq!(balance_state(&user(2), &points, None), "null");
        let hold = Hold {
            id: EntityId::generate(),
            account: user(2),
            asset: points,
            amount: 40,
            settled_amount: 0,
            status: HoldStatus::Open,
            reference: "market:listing:x".into(),
            expires_at: None,
            created_at: 0,
            resolved_at: None,
        };
        let after: serde_json::Value = serde_json::from_str(&hold_state(&hold, "released", Some("e1"))).expect("json");
        assert_eq!((after["status"].as_str(), after["resolution_entry_id"].as_str()), (Some("released"), Some("e1")));
    }

    #[test]
    fn forced_release_plans_a_release_keyed_by_the_tool() {
        let command = ForceReleaseHold { hold: EntityId::generate(), reason: "listing gone".into() };
        let key = IdempotencyKey::parse("k1").expect("key");
        let plan = command.plan(key.clone(), "user:1");
        assert_eq!(plan.resolutions, vec![(command.hold.clone(), Resolution::Release)]);
        assert_eq!((plan.meta.business_type.as_str(), plan.meta.memo.as_str()), ("HOLD_FORCE_RELEASE", "listing gone"));
        assert_eq!(command.draft(&key, "user:1").target_id, command.hold.to_string());
    }
}
