//! `economy history` (an account's journal, paged) and `economy reconcile` (the ledger's
//! invariants, docs/ledger.md, "Reconciliation").

use std::process::ExitCode;

use clap::Args;
use economy_proto::ledger::v1 as pb;

use crate::client::Ledger;
use crate::commands::AccountArgs;
use crate::output;

/// Exit status of `economy reconcile` when the ledger is inconsistent.
pub const INCONSISTENT: u8 = 3;

/// `economy history`.
#[derive(Debug, Args)]
pub struct History {
    /// The account.
    #[command(flatten)]
    pub account: AccountArgs,
    /// Only entries moving this asset on the account.
    #[arg(long, default_value = "")]
    pub asset: String,
    /// Entries per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// Runs `economy history`: every entry with its postings, newest first, then
/// `next page: TOKEN` when there is more.
pub async fn history(ledger: &mut Ledger, args: History) -> anyhow::Result<ExitCode> {
    let request = pb::ListTransactionsRequest {
        account: Some(args.account.account()),
        asset_code: args.asset,
        page_size: args.page_size,
        page_token: args.page_token,
    };
    let response = ledger.list_transactions(request).await?.into_inner();
    if response.transactions.is_empty() {
        println!("no transactions");
    }
    for transaction in &response.transactions {
        output::transaction(transaction).iter().for_each(|line| println!("{line}"));
    }
    if !response.next_page_token.is_empty() {
        println!("next page: {}", response.next_page_token);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy reconcile`: exit 0 when consistent, else one line per finding and exit 3.
pub async fn reconcile(ledger: &mut Ledger) -> anyhow::Result<ExitCode> {
    let response = ledger.reconcile(pb::ReconcileRequest {}).await?.into_inner();
    if response.findings.is_empty() {
        println!(
            "ledger is consistent ({} balances, {} assets checked)",
            response.balances_checked, response.assets_checked
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("ledger is INCONSISTENT: {} finding(s)", response.findings.len());
    response.findings.iter().for_each(|finding| println!("{}", output::finding(finding)));
    Ok(ExitCode::from(INCONSISTENT))
}
