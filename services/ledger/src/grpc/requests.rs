//! Validation of inbound requests into domain commands and plans (docs/errors.md: bad
//! input gets `INVALID_ARGUMENT` / `VALIDATION_FAILED` listing every bad field).

use std::collections::{BTreeMap, BTreeSet};

use economy_kit::error::{VALIDATION_FAILED, Violations, invalid_field};
use economy_kit::identity::Caller;
use economy_kit::time::from_timestamp;
use economy_kit::watch::Start;
use economy_proto::ledger::v1 as pb;
use prost_types::Timestamp;
use tonic::Status;

use super::convert::{self, account, amount, code, entity_id, field, key, text, user};
use super::{DOMAIN, deny, may_read, validated};
use crate::domain::catalog::{Asset, ConversionRule};
use crate::domain::commands::{
    AdjustBalance, ConvertAsset, CreateHold, Direction, PostTransaction, ReleaseHold, SettleHold, WritePlan,
};
use crate::domain::ids::{AccountId, Amount, EntityId, IdempotencyKey, parse_business_type};
use crate::store::{EntryFilter, EntryWatch, HoldFilter, Page, ReconcilePosition, StatementQuery};

const MAX_MEMO: usize = 500;
const MAX_REFERENCE: usize = 200;
const MAX_CORRELATION_ID: usize = 128;
const MAX_POSTINGS: usize = 100;
const MAX_SETTLEMENTS: usize = 20;
const MAX_METADATA_ENTRIES: usize = 32;

/// An account the caller may read (`PERMISSION_DENIED` otherwise).
pub fn readable_account(caller: &Caller, reference: Option<&pb::AccountRef>) -> Result<AccountId, Status> {
    let mut violations = Violations::default();
    let parsed = account(&mut violations, "account", reference);
    let parsed = validated(violations, parsed)?;
    if may_read(caller, &parsed) { Ok(parsed) } else { Err(deny("read this account")) }
}

/// `ListHolds`: one readable account, or (admins and services, with a reference prefix)
/// every account (docs/ledger.md, "Holds").
pub fn hold_listing(caller: &Caller, request: &pb::ListHoldsRequest) -> Result<(HoldFilter, Page), Status> {
    let prefix = &request.reference_prefix;
    let account = match request.account {
        None if !prefix.is_empty() => {
            if !caller.is_privileged() {
                return Err(deny("list the holds of every account"));
            }
            None
        }
        _ => Some(readable_account(caller, request.account.as_ref())?),
    };
    let mut violations = Violations::default();
    let status = field(&mut violations, "status", convert::hold_status_filter(request.status));
    let page = convert::page(&mut violations, request.page_size, &request.page_token);
    let prefix = text(&mut violations, "reference_prefix", prefix, MAX_REFERENCE, false);
    violations.check(!request.reference_prefix.contains('\0'), "reference_prefix", "must not contain NUL");
    let ((status, page), reference_prefix) = validated(violations, status.zip(page).zip(prefix))?;
    Ok((HoldFilter { account, status, reference_prefix }, page))
}

/// An instant (ms) from a timestamp: `None` and a violation when missing but `required`
/// or invalid; `Some(None)` when missing and optional.
fn instant(violations: &mut Violations, name: &str, value: Option<&Timestamp>, required: bool) -> Option<Option<i64>> {
    match value.map(from_timestamp) {
        None if required => field(violations, name, Err("is required")),
        None => Some(None),
        Some(Some(at)) => Some(Some(at)),
        Some(None) => field(violations, name, Err("must be a valid time")),
    }
}

/// The optional `as_of` of a balance read, in ms (`None`: now).
pub fn as_of(as_of: Option<&Timestamp>) -> Result<Option<i64>, Status> {
    let mut violations = Violations::default();
    let at = instant(&mut violations, "as_of", as_of, false);
    validated(violations, at)
}

/// `GetStatement`: a readable account's balance over `[from, to)` (docs/ledger.md,
/// "Statements"); the page token is the previous page's last balance version.
pub fn statement(caller: &Caller, request: &pb::GetStatementRequest) -> Result<StatementQuery, Status> {
    let account = readable_account(caller, request.account.as_ref())?;
    let mut violations = Violations::default();
    let asset = code(&mut violations, "asset_code", &request.asset_code);
    let from = instant(&mut violations, "from", request.from.as_ref(), true).flatten();
    let to = instant(&mut violations, "to", request.to.as_ref(), true).flatten();
    if let (Some(from), Some(to)) = (from, to) {
        violations.check(from < to, "to", "must be after from");
    }
    let limit = convert::page_limit(&mut violations, request.page_size);
    let after_seq = if request.page_token.is_empty() {
        Some(0)
    } else {
        let parsed = request.page_token.parse::<i64>().ok().filter(|seq| *seq > 0);
        field(&mut violations, "page_token", parsed.ok_or("must be a previous page's next_page_token"))
    };
    let ((asset, limit), ((from, to), after_seq)) =
        validated(violations, asset.zip(limit).zip(from.zip(to).zip(after_seq)))?;
    Ok(StatementQuery { account, asset: asset.to_string(), from, to, after_seq, limit })
}

/// `ListTransactions`: one readable account, or (admins and services, with a correlation
/// id) every account, as `ListHolds` treats a reference prefix (docs/ledger.md, "History
/// filters").
pub fn transaction_listing(
    caller: &Caller,
    request: &pb::ListTransactionsRequest,
) -> Result<(EntryFilter, Page), Status> {
    let account = match request.account {
        None if !request.correlation_id.is_empty() => {
            if !caller.is_privileged() {
                return Err(deny("list the entries of every account"));
            }
            None
        }
        _ => Some(readable_account(caller, request.account.as_ref())?),
    };
    let mut violations = Violations::default();
    let asset = if request.asset_code.is_empty() {
        Some(None)
    } else {
        violations.check(account.is_some(), "asset_code", "needs an account");
        code(&mut violations, "asset_code", &request.asset_code).map(|code| Some(code.to_string()))
    };
    let correlation_id = text(&mut violations, "correlation_id", &request.correlation_id, MAX_CORRELATION_ID, false);
    let business_type = if request.business_type.is_empty() {
        Some(String::new())
    } else {
        field(&mut violations, "business_type", parse_business_type(&request.business_type))
    };
    let from = instant(&mut violations, "from", request.from.as_ref(), false);
    let to = instant(&mut violations, "to", request.to.as_ref(), false);
    if let (Some(Some(from)), Some(Some(to))) = (from, to) {
        violations.check(from < to, "to", "must be after from");
    }
    let page = convert::page(&mut violations, request.page_size, &request.page_token);
    let ((asset, correlation_id), ((business_type, page), (from, to))) =
        validated(violations, asset.zip(correlation_id).zip(business_type.zip(page).zip(from.zip(to))))?;
    Ok((EntryFilter { account, asset, correlation_id, business_type, from, to }, page))
}

/// `WatchEntries`: the filter and where the stream starts. A user must name their own
/// account; admins and services any or none (docs/ledger.md, "Watching entries").
pub fn entry_watch(caller: &Caller, request: &pb::WatchEntriesRequest) -> Result<(EntryWatch, Start), Status> {
    use pb::watch_entries_request::Start as Oneof;
    let account = match &request.account {
        None if caller.is_privileged() => None,
        None => return Err(deny("watch the entries of every account")),
        Some(reference) => Some(readable_account(caller, Some(reference))?),
    };
    let mut violations = Violations::default();
    let asset = match request.asset_code.as_str() {
        "" => Some(None),
        value => code(&mut violations, "asset_code", value).map(|code| Some(code.to_string())),
    };
    let business_type = match request.business_type.as_str() {
        "" => Some(None),
        value => field(&mut violations, "business_type", parse_business_type(value)).map(Some),
    };
    let start = match &request.start {
        None => Start::from_request(&mut violations, None, None),
        Some(Oneof::AfterCursor(text)) => Start::from_request(&mut violations, Some(text), None),
        Some(Oneof::FromBeginning(flag)) => Start::from_request(&mut violations, None, Some(*flag)),
    };
    let ((asset, business_type), start) = validated(violations, asset.zip(business_type).zip(start))?;
    Ok((EntryWatch { account, asset, business_type }, start))
}

fn business_type(violations: &mut Violations, value: &str, default: &str) -> Option<String> {
    field(violations, "business_type", parse_business_type(if value.is_empty() { default } else { value }))
}

/// `DefineAsset`.
pub fn asset(request: &pb::DefineAssetRequest) -> Result<Asset, Status> {
    let mut violations = Violations::default();
    let input = request.asset.clone().unwrap_or_default();
    violations.check(request.asset.is_some(), "asset", "is required");
    let code = code(&mut violations, "asset.code", &input.code);
    let display_name = text(&mut violations, "asset.display_name", &input.display_name, 128, true);
    let kind = field(&mut violations, "asset.kind", convert::asset_kind(input.kind));
    violations.check(input.metadata.len() <= MAX_METADATA_ENTRIES, "asset.metadata", "at most 32 entries");
    let sane = input.metadata.iter().all(|(key, value)| (1..=64).contains(&key.len()) && value.len() <= 1024);
    violations.check(sane, "asset.metadata", "keys must be 1-64 bytes, values at most 1024");
    let metadata: BTreeMap<String, String> = input.metadata.clone().into_iter().collect();
    let (code, (display_name, kind)) = validated(violations, code.zip(display_name.zip(kind)))?;
    Ok(Asset { code, display_name, kind, metadata, created_at: 0 })
}

/// `DefineConversionRule`.
pub fn rule(request: &pb::DefineConversionRuleRequest) -> Result<ConversionRule, Status> {
    let mut violations = Violations::default();
    let input = request.rule.clone().unwrap_or_default();
    violations.check(request.rule.is_some(), "rule", "is required");
    let id = code(&mut violations, "rule.id", &input.id);
    let from_asset = code(&mut violations, "rule.from_asset", &input.from_asset);
    let to_asset = code(&mut violations, "rule.to_asset", &input.to_asset);
    let from_amount = amount(&mut violations, "rule.from_amount", input.from_amount);
    let to_amount = amount(&mut violations, "rule.to_amount", input.to_amount);
    violations.check(input.from_asset != input.to_asset, "rule.to_asset", "must differ from from_asset");
    let ((id, from_asset), (to_asset, (from_amount, to_amount))) =
        validated(violations, id.zip(from_asset).zip(to_asset.zip(from_amount.zip(to_amount))))?;
    Ok(ConversionRule {
        id,
        from_asset,
        from_amount: from_amount.get(),
        to_asset,
        to_amount: to_amount.get(),
        enabled: input.enabled,
    })
}

/// `AdjustBalance`.
pub fn adjust(request: &pb::AdjustBalanceRequest, key_text: &str, actor: &str) -> Result<WritePlan, Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let user = user(&mut violations, "user_id", request.user_id);
    let asset = code(&mut violations, "asset_code", &request.asset_code);
    let amount = amount(&mut violations, "amount", request.amount);
    let reason = text(&mut violations, "reason", &request.reason, MAX_MEMO, true);
    let direction = match pb::AdjustDirection::try_from(request.direction) {
        Ok(pb::AdjustDirection::Credit) => Some(Direction::Credit),
        Ok(pb::AdjustDirection::Debit) => Some(Direction::Debit),
        _ => field(&mut violations, "direction", Err("must be CREDIT or DEBIT")),
    };
    let ((idempotency_key, user), ((asset, amount), (reason, direction))) =
        validated(violations, idempotency_key.zip(user).zip(asset.zip(amount).zip(reason.zip(direction))))?;
    Ok(AdjustBalance { user, asset, direction, amount, reason }.plan(idempotency_key, actor))
}

fn settlements(
    violations: &mut Violations,
    settlements: &[pb::HoldSettlement],
) -> Option<Vec<(EntityId, Option<Amount>)>> {
    violations.check(settlements.len() <= MAX_SETTLEMENTS, "hold_settlements", "at most 20");
    let mut seen = BTreeSet::new();
    let parsed: Vec<_> = settlements
        .iter()
        .enumerate()
        .map(|(index, settlement)| {
            let hold = entity_id(violations, &format!("hold_settlements[{index}].hold_id"), &settlement.hold_id);
            violations.check(
                seen.insert(settlement.hold_id.clone()),
                &format!("hold_settlements[{index}].hold_id"),
                "is repeated",
            );
            let amount = match settlement.amount {
                None => Some(None),
                Some(value) => amount(violations, &format!("hold_settlements[{index}].amount"), value).map(Some),
            };
            Some((hold?, amount?))
        })
        .collect();
    parsed.into_iter().collect()
}

/// `PostTransaction`.
pub fn post(request: &pb::PostTransactionRequest, key_text: &str, actor: &str) -> Result<WritePlan, Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let business_type = business_type(&mut violations, &request.business_type, "TRANSFER");
    let correlation_id = text(&mut violations, "correlation_id", &request.correlation_id, MAX_CORRELATION_ID, false);
    let memo = text(&mut violations, "memo", &request.memo, MAX_MEMO, false);
    violations.check((1..=MAX_POSTINGS).contains(&request.postings.len()), "postings", "must hold 1 to 100 postings");
    let postings: Option<Vec<_>> = request
        .postings
        .iter()
        .enumerate()
        .map(|(index, posting)| {
            let account = account(&mut violations, &format!("postings[{index}].account"), posting.account.as_ref());
            let asset = code(&mut violations, &format!("postings[{index}].asset_code"), &posting.asset_code);
            violations.check(posting.amount != 0, &format!("postings[{index}].amount"), "must not be zero");
            Some((account?, asset?, posting.amount))
        })
        .collect();
    let settlements = settlements(&mut violations, &request.hold_settlements);
    let ((idempotency_key, business_type), ((correlation_id, memo), (postings, settlements))) = validated(
        violations,
        idempotency_key.zip(business_type).zip(correlation_id.zip(memo).zip(postings.zip(settlements))),
    )?;
    Ok(PostTransaction { business_type, correlation_id, memo, postings, settlements }.plan(idempotency_key, actor))
}

/// `CreateHold`; the hold id is generated here. Only the shape of `expires_at` is checked
/// here: whether it lies in the future depends on the clock, so the handler checks it
/// after the idempotency key found no earlier outcome ([`expires_in_the_past`]).
pub fn create_hold(request: &pb::CreateHoldRequest, key_text: &str, actor: &str) -> Result<WritePlan, Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let user = match account(&mut violations, "account", request.account.as_ref()) {
        Some(AccountId::User(user)) => Some(user),
        Some(AccountId::System(_)) => field(&mut violations, "account", Err("holds freeze user accounts only")),
        None => None,
    };
    let asset = code(&mut violations, "asset_code", &request.asset_code);
    let amount = amount(&mut violations, "amount", request.amount);
    let reference = text(&mut violations, "reference", &request.reference, MAX_REFERENCE, false);
    let expires_at = match request.expires_at.as_ref().map(from_timestamp) {
        None => Some(None),
        Some(Some(at)) => Some(Some(at)),
        Some(None) => field(&mut violations, "expires_at", Err("must be a valid time in the future")),
    };
    let ((idempotency_key, user), ((asset, amount), (reference, expires_at))) =
        validated(violations, idempotency_key.zip(user).zip(asset.zip(amount).zip(reference.zip(expires_at))))?;
    let command = CreateHold { user, asset, amount, expires_at, reference };
    Ok(command.plan(EntityId::generate(), idempotency_key, actor))
}

/// The refusal of a new hold whose `expires_at` is not after `now` (ms), if the plan's is.
pub fn expires_in_the_past(plan: &WritePlan, now: i64) -> Option<Status> {
    let expires_at = plan.new_hold.as_ref().and_then(|hold| hold.expires_at)?;
    (expires_at <= now)
        .then(|| invalid_field(DOMAIN, VALIDATION_FAILED, "expires_at", "must be a valid time in the future"))
}

/// `SettleHold`.
pub fn settle_hold(request: &pb::SettleHoldRequest, key_text: &str, actor: &str) -> Result<WritePlan, Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let hold = entity_id(&mut violations, "hold_id", &request.hold_id);
    let settled = match request.amount {
        None => Some(None),
        Some(value) => amount(&mut violations, "amount", value).map(Some),
    };
    let business_type = business_type(&mut violations, &request.business_type, "HOLD_SETTLE");
    let correlation_id = text(&mut violations, "correlation_id", &request.correlation_id, MAX_CORRELATION_ID, false);
    violations.check(
        (1..=MAX_POSTINGS).contains(&request.destinations.len()),
        "destinations",
        "must hold 1 to 100 credits",
    );
    let destinations: Option<Vec<_>> = request
        .destinations
        .iter()
        .enumerate()
        .map(|(index, posting)| {
            let account = account(&mut violations, &format!("destinations[{index}].account"), posting.account.as_ref());
            let asset = code(&mut violations, &format!("destinations[{index}].asset_code"), &posting.asset_code);
            let credit = amount(&mut violations, &format!("destinations[{index}].amount"), posting.amount);
            Some((account?, asset?, credit?))
        })
        .collect();
    let ((idempotency_key, hold), ((settled, business_type), (correlation_id, destinations))) = validated(
        violations,
        idempotency_key.zip(hold).zip(settled.zip(business_type).zip(correlation_id.zip(destinations))),
    )?;
    let command = SettleHold { hold, amount: settled, destinations, business_type, correlation_id };
    Ok(command.plan(idempotency_key, actor))
}

/// `ReleaseHold`.
pub fn release_hold(request: &pb::ReleaseHoldRequest, key_text: &str, actor: &str) -> Result<WritePlan, Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let hold = entity_id(&mut violations, "hold_id", &request.hold_id);
    let reason = text(&mut violations, "reason", &request.reason, MAX_MEMO, false);
    let (idempotency_key, (hold, reason)) = validated(violations, idempotency_key.zip(hold.zip(reason)))?;
    Ok(ReleaseHold { hold, reason, expiry: false }.plan(idempotency_key, actor))
}

/// `ConvertAsset` and its key (the rule is looked up by the caller).
pub fn convert(request: &pb::ConvertAssetRequest, key_text: &str) -> Result<(ConvertAsset, IdempotencyKey), Status> {
    let mut violations = Violations::default();
    let idempotency_key = key(&mut violations, "idempotency_key", key_text);
    let user = user(&mut violations, "user_id", request.user_id);
    let rule = code(&mut violations, "rule_id", &request.rule_id);
    let quantity = amount(&mut violations, "quantity", request.quantity);
    let (idempotency_key, (user, (rule, quantity))) =
        validated(violations, idempotency_key.zip(user.zip(rule.zip(quantity))))?;
    Ok((ConvertAsset { user, rule, quantity }, idempotency_key))
}

/// Where a whole `Reconcile` starts: a new pass, or the request's cursor (docs/ledger.md,
/// "Reconciliation"). Errors: `VALIDATION_FAILED` on `cursor` when it is not one the
/// ledger issued.
pub fn reconcile_position(request: &pb::ReconcileRequest) -> Result<ReconcilePosition, Status> {
    if request.cursor.is_empty() {
        return Ok(ReconcilePosition::start());
    }
    ReconcilePosition::from_cursor(&request.cursor)
        .ok_or_else(|| invalid_field(DOMAIN, VALIDATION_FAILED, "cursor", "must be a next_cursor of Reconcile"))
}
