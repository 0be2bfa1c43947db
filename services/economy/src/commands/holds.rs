//! `economy hold …`: freeze part of a user's balance, then settle, release or inspect it.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use economy_kit::time::{duration_millis, now_millis, to_timestamp};
use economy_proto::ledger::v1 as pb;

use crate::client::{self, KeyArgs, Ledger};
use crate::commands::balances::print_entry;
use crate::commands::user;
use crate::output;
use crate::parse::{self, HoldStatus};

/// `economy hold …`.
#[derive(Debug, Subcommand)]
pub enum HoldCommand {
    /// Freeze an amount of a user's available balance.
    Create(CreateHold),
    /// Pay all or part of an open hold to a user; the rest returns to the holder.
    Settle(SettleHold),
    /// Return an open hold's amount to the holder's available balance.
    Release(ReleaseHold),
    /// Show one hold.
    Show(ShowHold),
    /// List a user's holds, newest first.
    List(ListHolds),
}

/// `economy hold create`.
#[derive(Debug, Args)]
pub struct CreateHold {
    /// The user whose balance is frozen.
    #[arg(long)]
    pub user: i64,
    /// Asset code.
    #[arg(long)]
    pub asset: String,
    /// Positive amount to freeze.
    #[arg(long, value_parser = parse::positive)]
    pub amount: i64,
    /// Release automatically after this long (e.g. `1h`, `30m`, `2days`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires_in: Option<Duration>,
    /// Caller's reference (e.g. `market:listing:<id>`).
    #[arg(long, default_value = "")]
    pub reference: String,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy hold settle`.
#[derive(Debug, Args)]
pub struct SettleHold {
    /// The open hold.
    pub hold_id: String,
    /// The user paid.
    #[arg(long)]
    pub to: i64,
    /// Amount paid out (default: the whole hold).
    #[arg(long, value_parser = parse::positive)]
    pub amount: Option<i64>,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy hold release`.
#[derive(Debug, Args)]
pub struct ReleaseHold {
    /// The open hold.
    pub hold_id: String,
    /// Why (stored as the entry's memo).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy hold show`.
#[derive(Debug, Args)]
pub struct ShowHold {
    /// The hold.
    pub hold_id: String,
}

/// `economy hold list`.
#[derive(Debug, Args)]
pub struct ListHolds {
    /// The user whose holds are listed.
    #[arg(long)]
    pub user: i64,
    /// Only holds in this status.
    #[arg(long, value_enum)]
    pub status: Option<HoldStatus>,
    /// Holds per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// Runs `economy hold …`.
pub async fn run(ledger: &mut Ledger, command: HoldCommand) -> anyhow::Result<ExitCode> {
    match command {
        HoldCommand::Create(args) => create(ledger, args).await?,
        HoldCommand::Settle(args) => settle(ledger, args).await?,
        HoldCommand::Release(args) => {
            let request =
                pb::ReleaseHoldRequest { idempotency_key: String::new(), hold_id: args.hold_id, reason: args.reason };
            let response = ledger.release_hold(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            print_hold(response.hold.as_ref());
            print_entry(response.transaction.as_ref(), replayed || response.replayed);
        }
        HoldCommand::Show(args) => {
            let hold = get_hold(ledger, args.hold_id).await?;
            println!("{}", output::hold(&hold));
        }
        HoldCommand::List(args) => {
            let status = args.status.map_or(pb::HoldStatus::Unspecified, pb::HoldStatus::from);
            let request = pb::ListHoldsRequest {
                account: Some(user(args.user)),
                status: status.into(),
                page_size: args.page_size,
                page_token: args.page_token,
                ..Default::default()
            };
            let response = ledger.list_holds(request).await?.into_inner();
            if response.holds.is_empty() {
                println!("no holds");
            }
            response.holds.iter().for_each(|hold| println!("{}", output::hold(hold)));
            if !response.next_page_token.is_empty() {
                println!("next page: {}", response.next_page_token);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `CreateHold`, with `--expires-in` turned into an absolute `expires_at`.
async fn create(ledger: &mut Ledger, args: CreateHold) -> anyhow::Result<()> {
    let expires_at = args
        .expires_in
        .map(|ttl| now_millis().checked_add(duration_millis(ttl)).map(to_timestamp).context("--expires-in is too long"))
        .transpose()?;
    let request = pb::CreateHoldRequest {
        idempotency_key: String::new(),
        account: Some(user(args.user)),
        asset_code: args.asset,
        amount: args.amount,
        expires_at,
        reference: args.reference,
    };
    let response = ledger.create_hold(args.key.request(request)?).await?;
    let replayed = client::replayed(&response);
    let response = response.into_inner();
    print_hold(response.hold.as_ref());
    print_entry(response.transaction.as_ref(), replayed || response.replayed);
    Ok(())
}

/// `SettleHold` paying user `--to`; the hold is read first for its asset (and its whole
/// amount when `--amount` is absent).
async fn settle(ledger: &mut Ledger, args: SettleHold) -> anyhow::Result<()> {
    let hold = get_hold(ledger, args.hold_id.clone()).await?;
    let destination = pb::PostingInput {
        account: Some(user(args.to)),
        asset_code: hold.asset_code.clone(),
        amount: args.amount.unwrap_or(hold.amount),
    };
    let request = pb::SettleHoldRequest {
        idempotency_key: String::new(),
        hold_id: args.hold_id,
        amount: args.amount,
        destinations: vec![destination],
        business_type: String::new(),
        correlation_id: String::new(),
    };
    let response = ledger.settle_hold(args.key.request(request)?).await?;
    let replayed = client::replayed(&response);
    let response = response.into_inner();
    print_hold(response.hold.as_ref());
    print_entry(response.transaction.as_ref(), replayed || response.replayed);
    Ok(())
}

/// `GetHold`.
async fn get_hold(ledger: &mut Ledger, hold_id: String) -> anyhow::Result<pb::Hold> {
    let response = ledger.get_hold(pb::GetHoldRequest { hold_id: hold_id.clone() }).await?.into_inner();
    response.hold.with_context(|| format!("the ledger returned no hold for {hold_id}"))
}

/// Prints the hold line when the response carries one.
fn print_hold(hold: Option<&pb::Hold>) {
    if let Some(hold) = hold {
        println!("{}", output::hold(hold));
    }
}
