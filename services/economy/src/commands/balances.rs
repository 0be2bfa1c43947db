//! Balance movements and queries: `economy adjust`, `transfer`, `convert`, `balance`.

use std::process::ExitCode;

use clap::Args;
use economy_proto::ledger::v1 as pb;

use crate::client::{self, KeyArgs, Ledger};
use crate::commands::statement::instant;
use crate::commands::{AccountArgs, user};
use crate::output;
use crate::parse;

/// `economy adjust`: credit (or debit) a user against SYSTEM_ISSUANCE.
#[derive(Debug, Args)]
pub struct Adjust {
    /// The user adjusted.
    #[arg(long)]
    pub user: i64,
    /// Asset code.
    #[arg(long)]
    pub asset: String,
    /// Positive amount in the asset's smallest unit.
    #[arg(long, value_parser = parse::positive)]
    pub amount: i64,
    /// Why (stored as the entry's memo).
    #[arg(long)]
    pub reason: String,
    /// Remove from the user instead of adding.
    #[arg(long)]
    pub debit: bool,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy transfer`: move an amount from one user to another in one journal entry.
#[derive(Debug, Args)]
pub struct Transfer {
    /// Paying user.
    #[arg(long)]
    pub from: i64,
    /// Receiving user.
    #[arg(long)]
    pub to: i64,
    /// Asset code.
    #[arg(long)]
    pub asset: String,
    /// Positive amount in the asset's smallest unit.
    #[arg(long, value_parser = parse::positive)]
    pub amount: i64,
    /// Free text stored on the entry.
    #[arg(long, default_value = "")]
    pub memo: String,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy convert`: apply a conversion rule to a user's balance.
#[derive(Debug, Args)]
pub struct Convert {
    /// The user converting.
    #[arg(long)]
    pub user: i64,
    /// Conversion rule id.
    #[arg(long)]
    pub rule: String,
    /// How many times to apply the rule.
    #[arg(long, value_parser = parse::positive)]
    pub quantity: i64,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy balance`: one balance (`--asset`) or every non-zero balance of an account.
#[derive(Debug, Args)]
pub struct Balance {
    /// The account.
    #[command(flatten)]
    pub account: AccountArgs,
    /// Only this asset (shown even when zero).
    #[arg(long)]
    pub asset: Option<String>,
    /// The balance(s) as they stood at this instant (RFC 3339 UTC, e.g.
    /// 2026-12-07T02:00:00Z; docs/ledger.md, "Balances at an instant").
    #[arg(long, value_name = "RFC3339", value_parser = instant)]
    pub as_of: Option<prost_types::Timestamp>,
}

/// Runs `economy adjust`.
pub async fn adjust(ledger: &mut Ledger, args: Adjust) -> anyhow::Result<ExitCode> {
    let direction = if args.debit { pb::AdjustDirection::Debit } else { pb::AdjustDirection::Credit };
    let request = pb::AdjustBalanceRequest {
        idempotency_key: String::new(),
        user_id: args.user,
        asset_code: args.asset,
        direction: direction.into(),
        amount: args.amount,
        reason: args.reason,
    };
    let response = ledger.adjust_balance(args.key.request(request)?).await?;
    let replayed = client::replayed(&response);
    let response = response.into_inner();
    print_entry(response.transaction.as_ref(), replayed || response.replayed);
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy transfer` (`PostTransaction`, business type `TRANSFER`).
pub async fn transfer(ledger: &mut Ledger, args: Transfer) -> anyhow::Result<ExitCode> {
    let leg =
        |user_id, amount| pb::PostingInput { account: Some(user(user_id)), asset_code: args.asset.clone(), amount };
    let request = pb::PostTransactionRequest {
        idempotency_key: String::new(),
        business_type: "TRANSFER".to_owned(),
        correlation_id: String::new(),
        memo: args.memo.clone(),
        // `positive` guarantees amount > 0, so the negation cannot overflow.
        postings: vec![leg(args.from, -args.amount), leg(args.to, args.amount)],
        hold_settlements: Vec::new(),
    };
    let response = ledger.post_transaction(args.key.request(request)?).await?;
    let replayed = client::replayed(&response);
    let response = response.into_inner();
    print_entry(response.transaction.as_ref(), replayed || response.replayed);
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy convert`.
pub async fn convert(ledger: &mut Ledger, args: Convert) -> anyhow::Result<ExitCode> {
    let request = pb::ConvertAssetRequest {
        idempotency_key: String::new(),
        user_id: args.user,
        rule_id: args.rule,
        quantity: args.quantity,
    };
    let response = ledger.convert_asset(args.key.request(request)?).await?;
    let replayed = client::replayed(&response);
    let response = response.into_inner();
    print_entry(response.transaction.as_ref(), replayed || response.replayed);
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy balance`.
pub async fn balance(ledger: &mut Ledger, args: Balance) -> anyhow::Result<ExitCode> {
    let account = args.account.account();
    let as_of = args.as_of;
    match args.asset {
        Some(asset_code) => {
            let request = pb::GetBalanceRequest { account: Some(account), asset_code, as_of };
            if let Some(balance) = ledger.get_balance(request).await?.into_inner().balance {
                println!("{}", output::balance(&balance));
            }
        }
        None => {
            let balances =
                ledger.list_balances(pb::ListBalancesRequest { account: Some(account), as_of }).await?.into_inner();
            print_balances(&balances.balances);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per balance, or `no balances`.
fn print_balances(balances: &[pb::Balance]) {
    if balances.is_empty() {
        println!("no balances");
    }
    balances.iter().for_each(|balance| println!("{}", output::balance(balance)));
}

/// Prints `transaction <id> [(replayed)]` and the entry's postings.
pub fn print_entry(transaction: Option<&pb::Transaction>, replayed: bool) {
    println!("{}", output::transaction_id(transaction, replayed));
    if let Some(transaction) = transaction {
        output::transaction(transaction).iter().skip(1).for_each(|line| println!("{line}"));
    }
}
