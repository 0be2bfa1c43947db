//! Every way a ledger operation can fail (docs/errors.md): one enum, mapped to
//! `tonic::Status` in exactly one place (`grpc::error`).

use super::ids::{AccountId, AssetCode};

/// A ledger failure. Each variant maps to one stable `ErrorInfo.reason`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    /// `ASSET_NOT_FOUND`: the asset is not in the catalog.
    #[error("asset {0} is not defined")]
    AssetNotFound(String),
    /// `ACCOUNT_NOT_FOUND`: a system account that is not configured.
    #[error("account {0} does not exist")]
    AccountNotFound(String),
    /// `RULE_NOT_FOUND`: no conversion rule with this id.
    #[error("conversion rule {0} is not defined")]
    RuleNotFound(String),
    /// `RULE_DISABLED`: the conversion rule exists but is disabled.
    #[error("conversion rule {0} is disabled")]
    RuleDisabled(String),
    /// `INSUFFICIENT_BALANCE`: a user's available balance would go negative.
    #[error("insufficient {asset} balance on {account}")]
    InsufficientBalance {
        /// The account debited.
        account: AccountId,
        /// The asset.
        asset: AssetCode,
    },
    /// `BALANCE_OVERFLOW`: a balance would leave the i64 range.
    #[error("{asset} balance of {account} would overflow")]
    BalanceOverflow {
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetCode,
    },
    /// `UNBALANCED_TRANSACTION`: the postings of an asset do not sum to zero.
    #[error("postings of {asset} sum to {sum}, not zero")]
    Unbalanced {
        /// The asset.
        asset: AssetCode,
        /// The non-zero sum.
        sum: i128,
    },
    /// `BALANCE_NOT_FOUND`: no balance row, posting or open hold for this account and
    /// asset (nothing to recalculate).
    #[error("no balance of {asset} on {account}")]
    BalanceNotFound {
        /// The account.
        account: AccountId,
        /// The asset.
        asset: AssetCode,
    },
    /// `HOLD_NOT_FOUND`.
    #[error("hold {0} does not exist")]
    HoldNotFound(String),
    /// `HOLD_ALREADY_RESOLVED`: the hold was settled, released or expired before.
    #[error("hold {hold_id} is already {status}")]
    HoldAlreadyResolved {
        /// The hold.
        hold_id: String,
        /// Its final status.
        status: &'static str,
    },
    /// `HOLD_EXPIRED`: settling a hold at or after its `expires_at`. A hold is expired
    /// from that instant on, whether or not the expiry job has released it yet.
    #[error("hold {hold_id} expired at {expires_at} ms")]
    HoldExpired {
        /// The hold.
        hold_id: String,
        /// Its expiry, ms since the epoch.
        expires_at: i64,
    },
    /// `HOLD_AMOUNT_EXCEEDED`: settling more than the hold froze.
    #[error("cannot settle {requested} from hold {hold_id} of {amount}")]
    HoldAmountExceeded {
        /// The hold.
        hold_id: String,
        /// Its frozen amount.
        amount: i64,
        /// The amount asked for.
        requested: i64,
    },
    /// `IDEMPOTENCY_KEY_REUSED`: the key was used before for different content.
    #[error("idempotency key {0} was already used for a different request")]
    IdempotencyKeyReused(String),
    /// `TRANSACTION_NOT_FOUND`.
    #[error("transaction {0} does not exist")]
    TransactionNotFound(String),
    /// `PERMISSION_DENIED`: the caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// An unexpected storage failure; reported as an opaque INTERNAL.
    #[error("storage: {0}")]
    Storage(#[source] economy_kit::error::StorageCause),
}
