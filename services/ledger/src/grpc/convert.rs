//! proto <-> domain conversion. Inbound helpers record a field violation and return
//! `None` on bad input, so one response lists every bad field.

use economy_kit::error::Violations;
use economy_kit::time::to_timestamp;
use economy_proto::ledger::v1 as pb;

use crate::domain::catalog::{Asset, AssetKind, ConversionRule};
use crate::domain::entry::{Bucket, Entry, Leg};
use crate::domain::hold::{Hold, HoldStatus};
use crate::domain::ids::{AccountId, Amount, Code, EntityId, IdempotencyKey, UserId};
use crate::domain::reconcile::{Finding, FindingKind, Report};
use crate::store::{BalanceAt, Increment, Page, ReconcilePosition, Statement, StatementQuery};

/// Default and maximum page sizes of list RPCs.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest accepted `page_size`.
pub const MAX_PAGE_SIZE: i32 = 500;

/// Records `result`'s error as a violation of `field`.
pub fn field<T>(violations: &mut Violations, name: &str, result: Result<T, &'static str>) -> Option<T> {
    result.map_err(|description| violations.add(name, description)).ok()
}

/// A user account's id.
pub fn user(violations: &mut Violations, name: &str, id: i64) -> Option<UserId> {
    field(violations, name, UserId::parse(id))
}

/// A catalog code.
pub fn code(violations: &mut Violations, name: &str, value: &str) -> Option<Code> {
    field(violations, name, Code::parse(value))
}

/// A positive amount.
pub fn amount(violations: &mut Violations, name: &str, value: i64) -> Option<Amount> {
    field(violations, name, Amount::parse(value))
}

/// An idempotency key.
pub fn key(violations: &mut Violations, name: &str, value: &str) -> Option<IdempotencyKey> {
    field(violations, name, IdempotencyKey::parse(value))
}

/// A UUID.
pub fn entity_id(violations: &mut Violations, name: &str, value: &str) -> Option<EntityId> {
    field(violations, name, EntityId::parse(value))
}

/// Free text of at most `max` characters (`required`: not empty nor only white space; the
/// text is kept as given).
pub fn text(violations: &mut Violations, name: &str, value: &str, max: usize, required: bool) -> Option<String> {
    let length = value.chars().count();
    let ok = length <= max && (!value.trim().is_empty() || !required);
    violations.check(ok, name, if required { "is required (at most the allowed length)" } else { "is too long" });
    ok.then(|| value.to_owned())
}

/// An account reference.
pub fn account(violations: &mut Violations, name: &str, account: Option<&pb::AccountRef>) -> Option<AccountId> {
    match account.and_then(|account| account.account.as_ref()) {
        Some(pb::account_ref::Account::UserId(id)) => {
            user(violations, &format!("{name}.user_id"), *id).map(AccountId::User)
        }
        Some(pb::account_ref::Account::System(system)) => {
            field(violations, &format!("{name}.system"), AccountId::system(system))
        }
        None => field(violations, name, Err("must name a user_id or a system account")),
    }
}

/// A page size: 0 -> default, 1..=500.
pub fn page_limit(violations: &mut Violations, size: i32) -> Option<i64> {
    let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size };
    let ok = (1..=MAX_PAGE_SIZE).contains(&size);
    violations.check(ok, "page_size", "must be between 0 and 500");
    ok.then_some(i64::from(size))
}

/// A page request: size 0 -> default, 1..=500; token empty or a previous page's last id.
pub fn page(violations: &mut Violations, size: i32, token: &str) -> Option<Page> {
    let size = if size == 0 { DEFAULT_PAGE_SIZE } else { size };
    violations.check((1..=MAX_PAGE_SIZE).contains(&size), "page_size", "must be between 0 and 500");
    let before = if token.is_empty() {
        Some(None)
    } else {
        entity_id(violations, "page_token", token).map(|id| Some(id.to_string()))
    };
    Some(Page { before: before?, limit: i64::from(size) })
}

/// Token of the page after `ids` when the page was full.
pub fn next_page_token<'a>(ids: impl DoubleEndedIterator<Item = &'a str> + ExactSizeIterator, limit: i64) -> String {
    let full = i64::try_from(ids.len()).is_ok_and(|count| count == limit);
    if full { ids.last().unwrap_or_default().to_owned() } else { String::new() }
}

/// Proto asset kind -> domain.
pub fn asset_kind(kind: i32) -> Result<AssetKind, &'static str> {
    match pb::AssetKind::try_from(kind) {
        Ok(pb::AssetKind::Currency) => Ok(AssetKind::Currency),
        Ok(pb::AssetKind::Material) => Ok(AssetKind::Material),
        Ok(pb::AssetKind::Fragment) => Ok(AssetKind::Fragment),
        Ok(pb::AssetKind::Quota) => Ok(AssetKind::Quota),
        _ => Err("must be CURRENCY, MATERIAL, FRAGMENT or QUOTA"),
    }
}

/// Domain account -> proto.
pub fn account_ref(account: &AccountId) -> pb::AccountRef {
    let account = match account {
        AccountId::User(user) => pb::account_ref::Account::UserId(user.get()),
        AccountId::System(name) => pb::account_ref::Account::System(name.clone()),
    };
    pb::AccountRef { account: Some(account) }
}

/// A balance.
pub fn balance(account: &AccountId, asset: String, available: i64, frozen: i64) -> pb::Balance {
    pb::Balance {
        account: Some(account_ref(account)),
        asset_code: asset,
        available,
        frozen,
        total: available.saturating_add(frozen),
    }
}

/// A posting of `entry` with the balance its leg's account and asset hold after the entry.
fn posting(entry: &Entry, leg: &Leg) -> pb::Posting {
    let bucket = match leg.bucket {
        Bucket::Available => pb::Bucket::Available,
        Bucket::Frozen => pb::Bucket::Frozen,
    };
    let after = entry.balance_after(&leg.account, &leg.asset);
    pb::Posting {
        account: Some(account_ref(&leg.account)),
        asset_code: leg.asset.to_string(),
        amount: leg.amount,
        bucket: bucket.into(),
        hold_id: leg.hold_id.as_ref().map(ToString::to_string).unwrap_or_default(),
        available_after: after.map_or(0, |after| after.available),
        frozen_after: after.map_or(0, |after| after.frozen),
        balance_seq: after.map_or(0, |after| after.seq),
    }
}

/// A journal entry with the resulting balances of the user accounts it moved
/// (docs/ledger.md, "Resulting balances").
pub fn transaction(entry: &Entry) -> pb::Transaction {
    pb::Transaction {
        id: entry.id.clone(),
        idempotency_key: entry.idempotency_key.clone(),
        business_type: entry.business_type.clone(),
        correlation_id: entry.correlation_id.clone(),
        memo: entry.memo.clone(),
        postings: entry.legs.iter().map(|leg| posting(entry, leg)).collect(),
        actor: entry.actor.clone(),
        created_at: Some(to_timestamp(entry.created_at)),
        resulting_balances: entry
            .balances
            .iter()
            .filter(|after| after.account.user().is_some())
            .map(|after| balance(&after.account, after.asset.to_string(), after.available, after.frozen))
            .collect(),
    }
}

/// One page of a statement (docs/ledger.md, "Statements"); the page token is the last
/// line's balance version when the page is full.
pub fn statement(query: &StatementQuery, statement: &Statement) -> pb::GetStatementResponse {
    let at =
        |balance: &BalanceAt| self::balance(&query.account, query.asset.clone(), balance.available, balance.frozen);
    let lines: Vec<pb::StatementLine> = statement.entries.iter().map(|entry| statement_line(query, entry)).collect();
    let full = i64::try_from(lines.len()).is_ok_and(|count| count == query.limit);
    let next_page_token = match lines.last() {
        Some(last) if full => last.balance_seq.to_string(),
        _ => String::new(),
    };
    pb::GetStatementResponse {
        opening: Some(at(&statement.opening)),
        closing: Some(at(&statement.closing)),
        lines,
        next_page_token,
    }
}

/// How `entry` moved the statement's balance, and the balance after it.
fn statement_line(query: &StatementQuery, entry: &Entry) -> pb::StatementLine {
    let (mut available_change, mut frozen_change) = (0_i64, 0_i64);
    for leg in entry.legs.iter().filter(|leg| leg.account == query.account && leg.asset.as_str() == query.asset) {
        let change = if leg.bucket == Bucket::Frozen { &mut frozen_change } else { &mut available_change };
        *change = change.saturating_add(leg.amount);
    }
    let after =
        entry.balances.iter().find(|after| after.account == query.account && after.asset.as_str() == query.asset);
    pb::StatementLine {
        transaction: Some(transaction(entry)),
        available_change,
        frozen_change,
        balance_after: after
            .map(|after| balance(&after.account, after.asset.to_string(), after.available, after.frozen)),
        balance_seq: after.map_or(0, |after| after.seq),
    }
}

/// Domain hold status -> proto.
pub fn hold_status(status: HoldStatus) -> pb::HoldStatus {
    match status {
        HoldStatus::Open => pb::HoldStatus::Open,
        HoldStatus::Settled => pb::HoldStatus::Settled,
        HoldStatus::Released => pb::HoldStatus::Released,
        HoldStatus::Expired => pb::HoldStatus::Expired,
    }
}

/// Proto hold status filter -> domain (`None`: any).
pub fn hold_status_filter(status: i32) -> Result<Option<HoldStatus>, &'static str> {
    match pb::HoldStatus::try_from(status) {
        Ok(pb::HoldStatus::Unspecified) => Ok(None),
        Ok(pb::HoldStatus::Open) => Ok(Some(HoldStatus::Open)),
        Ok(pb::HoldStatus::Settled) => Ok(Some(HoldStatus::Settled)),
        Ok(pb::HoldStatus::Released) => Ok(Some(HoldStatus::Released)),
        Ok(pb::HoldStatus::Expired) => Ok(Some(HoldStatus::Expired)),
        Err(_) => Err("unknown hold status"),
    }
}

/// A hold.
pub fn hold(hold: &Hold) -> pb::Hold {
    pb::Hold {
        id: hold.id.to_string(),
        account: Some(account_ref(&hold.account)),
        asset_code: hold.asset.to_string(),
        amount: hold.amount,
        settled_amount: hold.settled_amount,
        status: hold_status(hold.status).into(),
        reference: hold.reference.clone(),
        expires_at: hold.expires_at.map(to_timestamp),
        created_at: Some(to_timestamp(hold.created_at)),
        resolved_at: hold.resolved_at.map(to_timestamp),
    }
}

/// An asset.
pub fn asset(asset: &Asset) -> pb::Asset {
    let kind = match asset.kind {
        AssetKind::Currency => pb::AssetKind::Currency,
        AssetKind::Material => pb::AssetKind::Material,
        AssetKind::Fragment => pb::AssetKind::Fragment,
        AssetKind::Quota => pb::AssetKind::Quota,
    };
    pb::Asset {
        code: asset.code.to_string(),
        display_name: asset.display_name.clone(),
        kind: kind.into(),
        metadata: asset.metadata.clone().into_iter().collect(),
        created_at: Some(to_timestamp(asset.created_at)),
    }
}

/// A conversion rule.
pub fn rule(rule: &ConversionRule) -> pb::ConversionRule {
    pb::ConversionRule {
        id: rule.id.to_string(),
        from_asset: rule.from_asset.to_string(),
        from_amount: rule.from_amount,
        to_asset: rule.to_asset.to_string(),
        to_amount: rule.to_amount,
        enabled: rule.enabled,
    }
}

/// An exact finding value as int64, clamped to its bounds (`i64::MAX` / `i64::MIN`): only
/// sums can leave int64 (an asset's total, a balance's available + frozen or postings).
fn saturate(value: i128) -> i64 {
    i64::try_from(value).unwrap_or(if value < 0 { i64::MIN } else { i64::MAX })
}

/// A reconciliation finding (values past int64 clamped to its bounds).
fn finding(finding: Finding) -> pb::Finding {
    let kind = match finding.kind {
        FindingKind::BalancePostingsMismatch => pb::FindingKind::BalancePostingsMismatch,
        FindingKind::FrozenHoldsMismatch => pb::FindingKind::FrozenHoldsMismatch,
        FindingKind::AssetNotZeroSum => pb::FindingKind::AssetNotZeroSum,
        FindingKind::AvailableAfterMismatch => pb::FindingKind::AvailableAfterMismatch,
        FindingKind::FrozenAfterMismatch => pb::FindingKind::FrozenAfterMismatch,
        FindingKind::BalanceSeqMismatch => pb::FindingKind::BalanceSeqMismatch,
    };
    pb::Finding {
        kind: kind.into(),
        account: finding.account.as_ref().map(account_ref),
        asset_code: finding.asset.to_string(),
        expected: saturate(finding.expected),
        actual: saturate(finding.actual),
        entry_id: finding.entry_id.unwrap_or_default(),
    }
}

/// A whole check's report of the part checked, with the cursor of the rest (`None`: the
/// pass is complete).
pub fn report(report: Report, next: Option<&ReconcilePosition>) -> pb::ReconcileResponse {
    pb::ReconcileResponse {
        findings: report.findings.into_iter().map(finding).collect(),
        balances_checked: report.balances_checked,
        assets_checked: report.assets_checked,
        entries_checked: report.entries_checked,
        next_cursor: next.map(ReconcilePosition::to_cursor).unwrap_or_default(),
    }
}

/// An incremental check's report.
pub fn increment(increment: Increment) -> pb::ReconcileResponse {
    pb::ReconcileResponse {
        findings: increment.findings.into_iter().map(finding).collect(),
        balances_checked: increment.balances_checked,
        assets_checked: 0,
        entries_checked: increment.entries_checked,
        next_cursor: String::new(),
    }
}
