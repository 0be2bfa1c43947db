//! `economy history` (an account's or a correlation's journal, paged) and `economy reconcile` (the ledger's
//! invariants, docs/ledger.md, "Reconciliation").

use std::process::ExitCode;

use clap::Args;
use economy_proto::ledger::v1 as pb;

use crate::client::Ledger;
use crate::commands::AccountArgs;
use crate::commands::statement::instant;
use crate::output;

/// Exit status of `economy reconcile` when the ledger is inconsistent.
pub const INCONSISTENT: u8 = 3;

/// `economy history`: an account's entries, or (admins, services) a correlation's.
#[derive(Debug, Args)]
pub struct History {
    /// A user's account.
    #[arg(long, value_name = "USER_ID", conflicts_with = "system", required_unless_present_any = ["system", "correlation"])]
    pub user: Option<i64>,
    /// A system account, e.g. `SYSTEM_ISSUANCE`.
    #[arg(long, value_name = "NAME")]
    pub system: Option<String>,
    /// Only entries moving this asset on the account.
    #[arg(long, default_value = "")]
    pub asset: String,
    /// Only entries of this correlation id (without an account: of every account).
    #[arg(long, value_name = "ID", default_value = "")]
    pub correlation: String,
    /// Only entries of this business type, e.g. `TRANSFER`.
    #[arg(long, value_name = "TYPE", default_value = "")]
    pub business_type: String,
    /// Only entries created at or after this instant (RFC 3339 UTC).
    #[arg(long, value_parser = instant)]
    pub from: Option<prost_types::Timestamp>,
    /// Only entries created before this instant (RFC 3339 UTC).
    #[arg(long, value_parser = instant)]
    pub to: Option<prost_types::Timestamp>,
    /// Entries per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

impl History {
    /// The account named, if any.
    fn account(&self) -> Option<pb::AccountRef> {
        let account = AccountArgs { user: self.user, system: self.system.clone() };
        (self.user.is_some() || self.system.is_some()).then(|| account.account())
    }
}

/// Runs `economy history`: every entry with its postings, newest first, then
/// `next page: TOKEN` when there is more.
pub async fn history(ledger: &mut Ledger, args: History) -> anyhow::Result<ExitCode> {
    let request = pb::ListTransactionsRequest {
        account: args.account(),
        asset_code: args.asset,
        page_size: args.page_size,
        page_token: args.page_token,
        correlation_id: args.correlation,
        business_type: args.business_type,
        from: args.from,
        to: args.to,
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

/// `economy reconcile`.
#[derive(Debug, clap::Args)]
pub struct Reconcile {
    /// Check only the entries committed since the incremental checkpoint, and move it.
    #[arg(long)]
    pub since_checkpoint: bool,
}

/// Runs `economy reconcile`: exit 0 when consistent, else one line per finding and exit 3.
/// The whole check follows the ledger's cursors until its pass is complete, printing
/// each call's findings as they come (docs/ledger.md, "Reconciliation").
pub async fn reconcile(ledger: &mut Ledger, args: Reconcile) -> anyhow::Result<ExitCode> {
    let mut request = pb::ReconcileRequest { since_checkpoint: args.since_checkpoint, ..Default::default() };
    let mut total = pb::ReconcileResponse::default();
    loop {
        let response = ledger.reconcile(request.clone()).await?.into_inner();
        if total.findings.is_empty() && !response.findings.is_empty() {
            println!("ledger is INCONSISTENT:");
        }
        response.findings.iter().for_each(|finding| println!("{}", output::finding(finding)));
        total.findings.extend(response.findings);
        total.balances_checked += response.balances_checked;
        total.entries_checked += response.entries_checked;
        total.assets_checked += response.assets_checked;
        if response.next_cursor.is_empty() {
            break;
        }
        request.cursor = response.next_cursor;
    }
    if !total.findings.is_empty() {
        println!("{} finding(s)", total.findings.len());
        return Ok(ExitCode::from(INCONSISTENT));
    }
    if args.since_checkpoint {
        println!(
            "ledger is consistent ({} entries, {} balances checked since the checkpoint)",
            total.entries_checked, total.balances_checked
        );
    } else {
        println!(
            "ledger is consistent ({} balances, {} entries, {} assets checked)",
            total.balances_checked, total.entries_checked, total.assets_checked
        );
    }
    Ok(ExitCode::SUCCESS)
}
