//! The one mapping from `LedgerError` to `tonic::Status` (docs/errors.md): gRPC code,
//! stable `ErrorInfo.reason`, and metadata naming the entities involved.

use economy_kit::error::{status, storage};
use economy_kit::reasons;
use tonic::{Code, Status};

use super::DOMAIN;
use crate::domain::LedgerError;

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Self {
        let message = error.to_string();
        let (code, reason, metadata): (Code, &str, Vec<(&str, String)>) = match error {
            LedgerError::AssetNotFound(asset) => {
                (Code::NotFound, reasons::ASSET_NOT_FOUND, vec![("asset_code", asset)])
            }
            LedgerError::AccountNotFound(account) => {
                (Code::NotFound, reasons::ACCOUNT_NOT_FOUND, vec![("account", account)])
            }
            LedgerError::RuleNotFound(rule) => (Code::NotFound, reasons::RULE_NOT_FOUND, vec![("rule_id", rule)]),
            LedgerError::RuleDisabled(rule) => {
                (Code::FailedPrecondition, reasons::RULE_DISABLED, vec![("rule_id", rule)])
            }
            LedgerError::InsufficientBalance { account, asset } => (
                Code::FailedPrecondition,
                reasons::INSUFFICIENT_BALANCE,
                vec![("account", account.key()), ("asset_code", asset.to_string())],
            ),
            LedgerError::BalanceOverflow { account, asset } => (
                Code::OutOfRange,
                reasons::BALANCE_OVERFLOW,
                vec![("account", account.key()), ("asset_code", asset.to_string())],
            ),
            LedgerError::Unbalanced { asset, sum } => (
                Code::InvalidArgument,
                reasons::UNBALANCED_TRANSACTION,
                vec![("asset_code", asset.to_string()), ("sum", sum.to_string())],
            ),
            LedgerError::BalanceNotFound { account, asset } => (
                Code::NotFound,
                reasons::BALANCE_NOT_FOUND,
                vec![("account", account.key()), ("asset_code", asset.to_string())],
            ),
            LedgerError::HoldNotFound(hold) => (Code::NotFound, reasons::HOLD_NOT_FOUND, vec![("hold_id", hold)]),
            LedgerError::HoldAlreadyResolved { hold_id, status } => (
                Code::FailedPrecondition,
                reasons::HOLD_ALREADY_RESOLVED,
                vec![("hold_id", hold_id), ("status", status.to_owned())],
            ),
            LedgerError::HoldExpired { hold_id, expires_at } => (
                Code::FailedPrecondition,
                reasons::HOLD_EXPIRED,
                vec![("hold_id", hold_id), ("expires_at", expires_at.to_string())],
            ),
            LedgerError::HoldAmountExceeded { hold_id, amount, requested } => (
                Code::FailedPrecondition,
                reasons::HOLD_AMOUNT_EXCEEDED,
                vec![("hold_id", hold_id), ("amount", amount.to_string()), ("requested", requested.to_string())],
            ),
            LedgerError::IdempotencyKeyReused(key) => {
                (Code::AlreadyExists, reasons::IDEMPOTENCY_KEY_REUSED, vec![("idempotency_key", key)])
            }
            LedgerError::TransactionNotFound(id) => {
                (Code::NotFound, reasons::TRANSACTION_NOT_FOUND, vec![("transaction_id", id)])
            }
            LedgerError::PermissionDenied(_) => (Code::PermissionDenied, reasons::PERMISSION_DENIED, vec![]),
            LedgerError::Storage(cause) => return storage(DOMAIN, &cause, &message),
        };
        status(code, DOMAIN, reason, message, metadata)
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::error::reason;

    use super::*;

    #[test]
    fn storage_errors_are_opaque() {
        let status = Status::from(LedgerError::Storage("UNIQUE constraint failed: balances".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("balances"));
    }

    #[test]
    fn reasons_are_stable() {
        let status = Status::from(LedgerError::IdempotencyKeyReused("k".into()));
        assert_eq!((status.code(), reason(&status).as_deref()), (Code::AlreadyExists, Some("IDEMPOTENCY_KEY_REUSED")));
    }
}
