//! `ImportBalances` (docs/import.md, "balances.jsonl"): each legacy balance becomes the
//! journal entry a PostTransaction of it would write (business type `IMPORT`,
//! SYSTEM_ISSUANCE to the user, key `import:balance:<external_id>`), validated on its own
//! and answered with its own outcome. The call's valid rows are applied together (the
//! new ones in one transaction, `LedgerStore::apply_imports`; docs/import.md, "Speed");
//! only a failure of the service (storage) fails the whole call, which the importer then
//! retries.

use economy_kit::error::{Violations, reason};
use economy_proto::ledger::v1 as pb;
use pb::account_ref::Account;
use tonic::Status;

use super::{DOMAIN, convert, requests};
use crate::domain::ids::SYSTEM_ISSUANCE;
use crate::store::{Applied, LedgerStore};

/// Most rows in one call.
pub const MAX_ROWS: usize = 1000;
/// Business type of every opening entry.
pub const IMPORT_BUSINESS_TYPE: &str = "IMPORT";

/// Imports every row of `request`, as `actor`; the results in row order.
pub async fn import_balances(
    store: &LedgerStore,
    request: &pb::ImportBalancesRequest,
    actor: &str,
) -> Result<pb::ImportBalancesResponse, Status> {
    let mut violations = Violations::default();
    violations.check((1..=MAX_ROWS).contains(&request.rows.len()), "rows", "must hold 1-1000 rows");
    violations.finish(DOMAIN)?;
    let planned: Vec<_> = request
        .rows
        .iter()
        .map(|row| {
            let entry = opening_entry(row);
            check(row).and_then(|()| requests::post(&entry, &entry.idempotency_key, actor))
        })
        .collect();
    let plans: Vec<_> = planned.iter().filter_map(|plan| plan.as_ref().ok()).cloned().collect();
    let mut applied = store.apply_imports(&plans).await.map_err(Status::from)?.into_iter();
    let mut results = Vec::with_capacity(request.rows.len());
    for (row, plan) in request.rows.iter().zip(planned) {
        let outcome = match plan {
            Ok(_) => {
                applied.next().ok_or_else(|| Status::internal("a planned row has no result"))?.map_err(Status::from)
            }
            Err(refusal) => Err(refusal),
        };
        results.push(result(row, outcome)?);
    }
    Ok(pb::ImportBalancesResponse { results })
}

/// The PostTransaction an opening balance is.
fn opening_entry(row: &pb::ImportBalanceRow) -> pb::PostTransactionRequest {
    let leg = |account, amount| pb::PostingInput {
        account: Some(pb::AccountRef { account: Some(account) }),
        asset_code: row.asset_code.clone(),
        amount,
    };
    pb::PostTransactionRequest {
        idempotency_key: format!("import:balance:{}", row.external_id),
        business_type: IMPORT_BUSINESS_TYPE.into(),
        correlation_id: String::new(),
        memo: format!("opening balance {}", row.external_id),
        postings: vec![
            leg(Account::UserId(row.user_id), row.amount),
            leg(Account::System(SYSTEM_ISSUANCE.into()), row.amount.saturating_neg()),
        ],
        hold_settlements: Vec::new(),
    }
}

fn check(row: &pb::ImportBalanceRow) -> Result<(), Status> {
    let mut violations = Violations::default();
    let id = &row.external_id;
    let id_ok = (1..=100).contains(&id.len()) && id.bytes().all(|byte| byte.is_ascii_graphic());
    violations.check(id_ok, "external_id", "must be 1-100 printable ASCII characters without spaces");
    violations.check(row.user_id > 0, "user_id", "must be a positive user id");
    violations.check(row.amount > 0, "amount", "must be positive");
    violations.finish(DOMAIN)
}

/// One row's result from its outcome; `Err` only for a failure that is not the row's fault.
fn result(row: &pb::ImportBalanceRow, applied: Result<Applied, Status>) -> Result<pb::ImportBalanceResult, Status> {
    let result = pb::ImportBalanceResult { external_id: row.external_id.clone(), ..Default::default() };
    match applied {
        Ok(applied) => {
            let transaction = convert::transaction(&applied.entry);
            let user = Some(Account::UserId(row.user_id));
            let credited = transaction
                .postings
                .iter()
                .filter(|posting| posting.asset_code == row.asset_code)
                .filter(|posting| posting.account.as_ref().map(|account| &account.account) == Some(&user))
                .map(|posting| posting.amount)
                .sum();
            let outcome = if applied.replayed { pb::ImportOutcome::Unchanged } else { pb::ImportOutcome::Created };
            Ok(pb::ImportBalanceResult { outcome: outcome.into(), transaction_id: transaction.id, credited, ..result })
        }
        Err(status) if economy_kit::error::is_row_refusal(&status) => Ok(pb::ImportBalanceResult {
            outcome: pb::ImportOutcome::Refused.into(),
            reason: reason(&status).unwrap_or_default(),
            message: status.message().to_owned(),
            ..result
        }),
        Err(status) => Err(status),
    }
}
