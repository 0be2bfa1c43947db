//! Plain-text rendering of ledger messages and errors, one fact per line so scripts and
//! tests can match whole lines (e.g. `POINTS  available 700  frozen 50  total 750`).

use std::time::{Duration, UNIX_EPOCH};

use economy_kit::time::from_timestamp;
use economy_proto::ledger::v1 as pb;
use pb::account_ref::Account;
use tonic::{Code, Status};
use tonic_types::StatusExt;

/// A proto enum value's name without its prefix, lowercase
/// (`ITEM_STATUS_AVAILABLE`, `ITEM_STATUS_` -> `available`).
pub fn enum_name(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix).unwrap_or(full).to_ascii_lowercase()
}

/// `user:<id>`, the system account's name, or `-` when unset.
pub fn account(account: Option<&pb::AccountRef>) -> String {
    match account.and_then(|account| account.account.as_ref()) {
        Some(Account::UserId(user_id)) => format!("user:{user_id}"),
        Some(Account::System(name)) => name.clone(),
        None => "-".to_owned(),
    }
}

/// `ASSET  available A  frozen F  total T`.
pub fn balance(balance: &pb::Balance) -> String {
    format!(
        "{}  available {}  frozen {}  total {}",
        balance.asset_code, balance.available, balance.frozen, balance.total
    )
}

/// `hold <id> <status> <amount> <asset>`, plus the settled amount, reference and expiry
/// when present.
pub fn hold(hold: &pb::Hold) -> String {
    let mut line = format!("hold {} {} {} {}", hold.id, hold_status(hold.status()), hold.amount, hold.asset_code);
    if hold.status() == pb::HoldStatus::Settled {
        line.push_str(&format!("  settled {}", hold.settled_amount));
    }
    line.push_str(&format!("  account {}", account(hold.account.as_ref())));
    if !hold.reference.is_empty() {
        line.push_str(&format!("  reference {}", hold.reference));
    }
    if let Some(expires_at) = hold.expires_at.as_ref() {
        line.push_str(&format!("  expires {}", timestamp(Some(expires_at))));
    }
    line
}

/// Lowercase hold status: `open`, `settled`, `released`, `expired`, `unspecified`.
pub fn hold_status(status: pb::HoldStatus) -> &'static str {
    match status {
        pb::HoldStatus::Unspecified => "unspecified",
        pb::HoldStatus::Open => "open",
        pb::HoldStatus::Settled => "settled",
        pb::HoldStatus::Released => "released",
        pb::HoldStatus::Expired => "expired",
    }
}

/// Lowercase asset kind: `currency`, `material`, `fragment`, `quota`, `unspecified`.
pub fn asset_kind(kind: pb::AssetKind) -> &'static str {
    match kind {
        pb::AssetKind::Unspecified => "unspecified",
        pb::AssetKind::Currency => "currency",
        pb::AssetKind::Material => "material",
        pb::AssetKind::Fragment => "fragment",
        pb::AssetKind::Quota => "quota",
    }
}

/// `CODE  kind  "display name"` plus sorted `key=value` metadata.
pub fn asset(asset: &pb::Asset) -> String {
    let mut line = format!("{}  {}  {:?}", asset.code, asset_kind(asset.kind()), asset.display_name);
    let mut metadata: Vec<_> = asset.metadata.iter().collect();
    metadata.sort();
    for (key, value) in metadata {
        line.push_str(&format!("  {key}={value}"));
    }
    line
}

/// `ID  10 red_shard -> 1 red_crystal  enabled|disabled`.
pub fn rule(rule: &pb::ConversionRule) -> String {
    format!(
        "{}  {} {} -> {} {}  {}",
        rule.id,
        rule.from_amount,
        rule.from_asset,
        rule.to_amount,
        rule.to_asset,
        if rule.enabled { "enabled" } else { "disabled" }
    )
}

/// `transaction <id>`, with ` (replayed)` when the ledger returned an earlier entry.
pub fn transaction_id(transaction: Option<&pb::Transaction>, replayed: bool) -> String {
    let id = transaction.map_or("-", |transaction| transaction.id.as_str());
    if replayed { format!("transaction {id} (replayed)") } else { format!("transaction {id}") }
}

/// A journal entry: a header line (`<time>  <id>  <type>  by <actor>  "memo"`) and one
/// indented line per posting (`<account>  <asset>  <signed amount>  <bucket>  [hold <id>]`).
pub fn transaction(transaction: &pb::Transaction) -> Vec<String> {
    let mut header = format!(
        "{}  {}  {}  by {}",
        timestamp(transaction.created_at.as_ref()),
        transaction.id,
        transaction.business_type,
        transaction.actor
    );
    if !transaction.memo.is_empty() {
        header.push_str(&format!("  {:?}", transaction.memo));
    }
    let mut lines = vec![header];
    for posting in &transaction.postings {
        let bucket = match posting.bucket() {
            pb::Bucket::Frozen => "frozen",
            pb::Bucket::Available | pb::Bucket::Unspecified => "available",
        };
        let mut line =
            format!("  {}  {}  {:+}  {bucket}", account(posting.account.as_ref()), posting.asset_code, posting.amount);
        if !posting.hold_id.is_empty() {
            line.push_str(&format!("  hold {}", posting.hold_id));
        }
        // The balance after the entry (docs/ledger.md, "Resulting balances").
        line.push_str(&format!("  -> {} available, {} frozen", posting.available_after, posting.frozen_after));
        lines.push(line);
    }
    lines
}

/// One reconciliation finding: `<kind>  <account>  <asset>  expected E  actual A`.
pub fn finding(finding: &pb::Finding) -> String {
    let kind = match finding.kind() {
        pb::FindingKind::Unspecified => "UNSPECIFIED",
        pb::FindingKind::BalancePostingsMismatch => "BALANCE_POSTINGS_MISMATCH",
        pb::FindingKind::FrozenHoldsMismatch => "FROZEN_HOLDS_MISMATCH",
        pb::FindingKind::AssetNotZeroSum => "ASSET_NOT_ZERO_SUM",
        pb::FindingKind::AvailableAfterMismatch => "AVAILABLE_AFTER_MISMATCH",
        pb::FindingKind::FrozenAfterMismatch => "FROZEN_AFTER_MISMATCH",
        pb::FindingKind::BalanceSeqMismatch => "BALANCE_SEQ_MISMATCH",
    };
    format!(
        "{kind}  {}  {}  expected {}  actual {}",
        account(finding.account.as_ref()),
        finding.asset_code,
        finding.expected,
        finding.actual
    )
}

/// RFC 3339 UTC with milliseconds, or `-` when unset or out of range.
pub fn timestamp(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp
        .and_then(from_timestamp)
        .and_then(|millis| u64::try_from(millis).ok())
        .and_then(|millis| UNIX_EPOCH.checked_add(Duration::from_millis(millis)))
        .map_or_else(|| "-".to_owned(), |at| humantime::format_rfc3339_millis(at).to_string())
}

/// The canonical upper-case name of a gRPC status code (`FAILED_PRECONDITION`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The stderr lines of a failed call: `error: <CODE> <REASON>: <message>` (no reason
/// part when the status has no `ErrorInfo`), then `  field <name>: <description>` per
/// `BadRequest` violation.
pub fn status(status: &Status) -> Vec<String> {
    let code = code_name(status.code());
    let head = match economy_kit::error::reason(status) {
        Some(reason) => format!("error: {code} {reason}: {}", status.message()),
        None => format!("error: {code}: {}", status.message()),
    };
    let mut lines = vec![head];
    if let Some(bad_request) = status.get_details_bad_request() {
        for violation in bad_request.field_violations {
            lines.push(format!("  field {}: {}", violation.field, violation.description));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use economy_kit::error::{Violations, status as status_with_reason};

    use super::*;

    fn user(user_id: i64) -> Option<pb::AccountRef> {
        Some(pb::AccountRef { account: Some(Account::UserId(user_id)) })
    }

    #[test]
    fn balance_line_has_every_bucket() {
        let line = balance(&pb::Balance {
            account: user(2),
            asset_code: "POINTS".into(),
            available: 700,
            frozen: 50,
            total: 750,
        });
        assert_eq!(line, "POINTS  available 700  frozen 50  total 750");
    }

    #[test]
    fn accounts_render_users_and_system_accounts() {
        assert_eq!(account(user(7).as_ref()), "user:7");
        let system = pb::AccountRef { account: Some(Account::System("SYSTEM_ISSUANCE".into())) };
        assert_eq!(account(Some(&system)), "SYSTEM_ISSUANCE");
        assert_eq!(account(None), "-");
    }

    #[test]
    fn hold_line_starts_with_id_status_amount_asset() {
        let hold = pb::Hold {
            id: "h1".into(),
            account: user(2),
            asset_code: "POINTS".into(),
            amount: 100,
            status: pb::HoldStatus::Open.into(),
            ..pb::Hold::default()
        };
        assert_eq!(self::hold(&hold), "hold h1 open 100 POINTS  account user:2");
    }

    #[test]
    fn posting_lines_end_with_the_balance_after_the_entry() {
        let transaction = pb::Transaction {
            id: "t1".into(),
            business_type: "ADMIN_ADJUST".into(),
            actor: "user:1".into(),
            postings: vec![pb::Posting {
                account: user(2),
                asset_code: "POINTS".into(),
                amount: 60,
                available_after: 700,
                ..Default::default()
            }],
            ..Default::default()
        };
        let lines = super::transaction(&transaction);
        assert_eq!(lines[1], "  user:2  POINTS  +60  available  -> 700 available, 0 frozen");
    }

    #[test]
    fn timestamps_render_as_rfc3339() {
        let at = prost_types::Timestamp { seconds: 1_700_000_000, nanos: 123_000_000 };
        assert_eq!(timestamp(Some(&at)), "2023-11-14T22:13:20.123Z");
        assert_eq!(timestamp(None), "-");
        assert_eq!(timestamp(Some(&prost_types::Timestamp { seconds: -5, nanos: 0 })), "-");
    }

    #[test]
    fn status_lines_name_code_reason_and_fields() {
        let failure = status_with_reason(
            Code::FailedPrecondition,
            "economy.ledger",
            "INSUFFICIENT_BALANCE",
            "too poor",
            [("a", "b")],
        );
        assert_eq!(status(&failure), ["error: FAILED_PRECONDITION INSUFFICIENT_BALANCE: too poor"]);

        let mut violations = Violations::default();
        violations.add("amount", "must be positive");
        let invalid = violations.finish("economy.ledger").expect_err("invalid");
        assert_eq!(
            status(&invalid),
            ["error: INVALID_ARGUMENT VALIDATION_FAILED: amount: must be positive", "  field amount: must be positive"]
        );

        assert_eq!(status(&Status::unavailable("down")), ["error: UNAVAILABLE: down"]);
    }
}
