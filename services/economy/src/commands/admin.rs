//! `economy admin …`: the compensation tools (issue 6, "Compensation tools with audit")
//! and their audit records. Every tool needs the admin role (100) and `--reason`, goes
//! through the gateway with an `idempotency-key` (`--idempotency-key` to retry one
//! safely), and prints the fixed entity, then the audit record the owning service wrote
//! in the same transaction:
//!
//! ```text
//! audit <id> <ACTION> <target type> <target id>  by <actor>  at <time>  key <key>
//!   reason: <reason>
//!   before: <JSON>
//!   after:  <JSON>
//! ```

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use economy_proto::audit::v1::AuditRecord;
use economy_proto::items::v1 as items_pb;
use economy_proto::ledger::v1 as ledger_pb;
use economy_proto::market::v1 as market_pb;
use economy_proto::redemption::v1 as redemption_pb;

use crate::client::{self, KeyArgs, Ledger};
use crate::commands::AccountArgs;
use crate::commands::items::{Items, item_line};
use crate::commands::market::Market;
use crate::commands::redemption::{Redemption, order_line};
use crate::output::{self, enum_name, timestamp};

/// `economy admin …`.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Recompute a balance from its postings and open holds and overwrite the stored row.
    RecalcBalance(RecalcBalance),
    /// Release an open hold whose owner is gone (a journal entry, like `hold release`).
    ReleaseHold(ReleaseHold),
    /// Unlock a locked item whatever its holder (an UNLOCKED event by you).
    UnlockItem(UnlockItem),
    /// Reset a dead or stuck outbox row to pending and deliver it now.
    RedriveOutbox(RedriveOutbox),
    /// Give a customer's pending redemption order a new code (shown once).
    ReissueCode(ReissueCode),
    /// List a service's audit records, newest first.
    Audit(Audit),
    /// Read or release the gateway's idempotency records.
    #[command(subcommand)]
    Idempotency(crate::commands::gateway::IdempotencyCommand),
}

/// Why, required by every tool (1-500 characters, stored in the audit record).
#[derive(Debug, Args)]
pub struct Reason {
    /// Why this fix is needed (1-500 characters; kept in the audit record).
    #[arg(long)]
    pub reason: String,
}

/// `economy admin recalc-balance`.
#[derive(Debug, Args)]
pub struct RecalcBalance {
    /// The account.
    #[command(flatten)]
    pub account: AccountArgs,
    /// Asset code.
    #[arg(long)]
    pub asset: String,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy admin release-hold`.
#[derive(Debug, Args)]
pub struct ReleaseHold {
    /// The open hold.
    pub hold_id: String,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy admin unlock-item`.
#[derive(Debug, Args)]
pub struct UnlockItem {
    /// The locked item instance.
    pub item_id: String,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Services with an outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutboxService {
    /// Items calls owed by redemption orders (consume, unlock).
    Redemption,
    /// Escrow returns owed by market listings (hold release, item unlock).
    Market,
}

/// `economy admin redrive-outbox`.
#[derive(Debug, Args)]
pub struct RedriveOutbox {
    /// Whose outbox.
    #[arg(long, value_enum)]
    pub service: OutboxService,
    /// The outbox row (with `--owner`: the order or listing that owes it).
    pub id: String,
    /// `ID` names the redemption order or market listing whose row is meant.
    #[arg(long)]
    pub owner: bool,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy admin reissue-code`.
#[derive(Debug, Args)]
pub struct ReissueCode {
    /// The customer's pending order.
    pub order_id: String,
    /// Why.
    #[command(flatten)]
    pub reason: Reason,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Services that keep audit records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuditService {
    /// The asset ledger.
    Ledger,
    /// Item instances.
    Items,
    /// Redemption orders.
    Redemption,
    /// The market.
    Market,
}

/// `economy admin audit`.
#[derive(Debug, Args)]
pub struct Audit {
    /// Whose records.
    #[arg(long, value_enum)]
    pub service: AuditService,
    /// Only the records of this target (a hold, item, order or outbox id; `user:2/POINTS`).
    #[arg(long, default_value = "")]
    pub target: String,
    /// Records per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// The clients the admin commands use, all through the gateway.
#[derive(Debug)]
pub struct Clients<'a> {
    /// The ledger.
    pub ledger: &'a mut Ledger,
    /// Item instances.
    pub items: &'a mut Items,
    /// Redemption orders.
    pub redemption: &'a mut Redemption,
    /// The market.
    pub market: &'a mut Market,
    /// The gateway's own services.
    pub gateway: crate::commands::gateway::Authed,
}

/// The lines of an audit record (see the module docs).
pub fn audit_lines(record: &AuditRecord) -> Vec<String> {
    vec![
        format!(
            "audit {} {} {} {}  by {}  at {}  key {}",
            record.id,
            record.action,
            record.target_type,
            record.target_id,
            record.actor,
            timestamp(record.created_at.as_ref()),
            record.idempotency_key
        ),
        format!("  reason: {}", record.reason),
        format!("  before: {}", record.before),
        format!("  after:  {}", record.after),
    ]
}

fn print_audit(record: Option<&AuditRecord>, replayed: bool) {
    if replayed {
        println!("replayed: this key was applied before; nothing changed now");
    }
    if let Some(record) = record {
        audit_lines(record).iter().for_each(|line| println!("{line}"));
    }
}

/// Runs `economy admin …`.
pub async fn run(clients: Clients<'_>, command: AdminCommand) -> anyhow::Result<ExitCode> {
    match command {
        AdminCommand::RecalcBalance(args) => {
            let request = ledger_pb::RecalculateBalanceRequest {
                idempotency_key: String::new(),
                account: Some(args.account.account()),
                asset_code: args.asset,
                reason: args.reason.reason,
            };
            let response = clients.ledger.recalculate_balance(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(balance) = &response.balance {
                println!("{}  {}", output::account(balance.account.as_ref()), output::balance(balance));
            }
            print_audit(response.audit_record.as_ref(), replayed || response.replayed);
        }
        AdminCommand::ReleaseHold(args) => {
            let request = ledger_pb::ForceReleaseHoldRequest {
                idempotency_key: String::new(),
                hold_id: args.hold_id,
                reason: args.reason.reason,
            };
            let response = clients.ledger.force_release_hold(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(hold) = &response.hold {
                println!("{}", output::hold(hold));
            }
            println!("{}", output::transaction_id(response.transaction.as_ref(), false));
            print_audit(response.audit_record.as_ref(), replayed || response.replayed);
        }
        AdminCommand::UnlockItem(args) => {
            let request = items_pb::ForceUnlockItemRequest {
                idempotency_key: String::new(),
                item_instance_id: args.item_id,
                reason: args.reason.reason,
            };
            let response = clients.items.force_unlock_item(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(item) = &response.item {
                println!("{}", item_line(item));
            }
            print_audit(response.audit_record.as_ref(), replayed || response.replayed);
        }
        AdminCommand::RedriveOutbox(args) => redrive(clients, args).await?,
        AdminCommand::ReissueCode(args) => {
            let request = redemption_pb::ReissueCodeOnBehalfRequest {
                idempotency_key: String::new(),
                order_id: args.order_id,
                reason: args.reason.reason,
            };
            let response = clients.redemption.reissue_code_on_behalf(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(order) = &response.order {
                println!("{}", order_line(order));
            }
            match response.code.as_str() {
                "" => {
                    println!("code not shown again (run `economy admin reissue-code` with a new key for a new one)")
                }
                code => println!("code: {code}"),
            }
            print_audit(response.audit_record.as_ref(), replayed || response.replayed);
        }
        AdminCommand::Audit(args) => return audit(clients, args).await,
        AdminCommand::Idempotency(command) => {
            return crate::commands::gateway::idempotency(clients.gateway, command).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `RedriveOutbox` of the chosen service.
async fn redrive(clients: Clients<'_>, args: RedriveOutbox) -> anyhow::Result<()> {
    let reason = args.reason.reason;
    match args.service {
        OutboxService::Redemption => {
            use redemption_pb::redrive_outbox_request::Target;
            let target = if args.owner { Target::OrderId(args.id) } else { Target::OutboxId(args.id) };
            let request =
                redemption_pb::RedriveOutboxRequest { idempotency_key: String::new(), target: Some(target), reason };
            let response = clients.redemption.redrive_outbox(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(entry) = &response.entry {
                println!(
                    "outbox {} {}  {} item {}  order {}  attempts {}{}",
                    entry.id,
                    enum_name(entry.status().as_str_name(), "OUTBOX_STATUS_"),
                    entry.action,
                    entry.item_instance_id,
                    entry.order_id,
                    entry.attempts,
                    last_error(&entry.last_error)
                );
            }
            print_audit(response.audit_record.as_ref(), replayed || response.replayed);
        }
        OutboxService::Market => {
            use market_pb::redrive_outbox_request::Target;
            let target = if args.owner { Target::ListingId(args.id) } else { Target::OutboxId(args.id) };
            let request =
                market_pb::RedriveOutboxRequest { idempotency_key: String::new(), target: Some(target), reason };
            let response = clients.market.redrive_outbox(args.key.request(request)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(entry) = &response.entry {
                println!(
                    "outbox {} {}  listing {}  attempts {}{}",
                    entry.id,
                    enum_name(entry.status().as_str_name(), "OUTBOX_STATUS_"),
                    entry.listing_id,
                    entry.attempts,
                    last_error(&entry.last_error)
                );
            }
            print_audit(response.audit_record.as_ref(), replayed || response.replayed);
        }
    }
    Ok(())
}

fn last_error(error: &str) -> String {
    if error.is_empty() { String::new() } else { format!("  last error {error}") }
}

/// `ListAuditRecords` of the chosen service.
async fn audit(clients: Clients<'_>, args: Audit) -> anyhow::Result<ExitCode> {
    let (target_id, page_size, page_token) = (args.target, args.page_size, args.page_token);
    let (records, next_page_token) = match args.service {
        AuditService::Ledger => {
            let request = ledger_pb::ListAuditRecordsRequest { target_id, page_size, page_token };
            let page = clients.ledger.list_audit_records(request).await?.into_inner();
            (page.records, page.next_page_token)
        }
        AuditService::Items => {
            let request = items_pb::ListAuditRecordsRequest { target_id, page_size, page_token };
            let page = clients.items.list_audit_records(request).await?.into_inner();
            (page.records, page.next_page_token)
        }
        AuditService::Redemption => {
            let request = redemption_pb::ListAuditRecordsRequest { target_id, page_size, page_token };
            let page = clients.redemption.list_audit_records(request).await?.into_inner();
            (page.records, page.next_page_token)
        }
        AuditService::Market => {
            let request = market_pb::ListAuditRecordsRequest { target_id, page_size, page_token };
            let page = clients.market.list_audit_records(request).await?.into_inner();
            (page.records, page.next_page_token)
        }
    };
    if records.is_empty() {
        println!("no audit records");
    }
    records.iter().flat_map(audit_lines).for_each(|line| println!("{line}"));
    if !next_page_token.is_empty() {
        println!("next page: {next_page_token}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// `economy admin …` alone.
    #[derive(Debug, Parser)]
    struct Admin {
        #[command(subcommand)]
        command: AdminCommand,
    }

    fn parse(args: &[&str]) -> Result<AdminCommand, clap::Error> {
        Admin::try_parse_from(std::iter::once("admin").chain(args.iter().copied())).map(|admin| admin.command)
    }

    #[test]
    fn every_tool_needs_a_reason_and_takes_a_key() {
        let with_reason: [&[&str]; 6] = [
            &["recalc-balance", "--user", "2", "--asset", "POINTS"],
            &["recalc-balance", "--system", "SYSTEM_ISSUANCE", "--asset", "POINTS"],
            &["release-hold", "h1"],
            &["unlock-item", "i1"],
            &["redrive-outbox", "--service", "market", "l1", "--owner"],
            &["reissue-code", "o1"],
        ];
        for args in with_reason {
            assert!(parse(args).is_err(), "{args:?} without --reason");
            let full: Vec<&str> = args.iter().copied().chain(["--reason", "why", "--idempotency-key", "k"]).collect();
            assert!(parse(&full).is_ok(), "{full:?}");
        }
        let Ok(AdminCommand::RedriveOutbox(redrive)) =
            parse(&["redrive-outbox", "--service", "redemption", "r1", "--reason", "dead row"])
        else {
            panic!("redrive-outbox parses");
        };
        assert_eq!((redrive.service, redrive.id.as_str(), redrive.owner), (OutboxService::Redemption, "r1", false));
        assert!(parse(&["redrive-outbox", "--service", "ledger", "r1", "--reason", "x"]).is_err());
        assert!(parse(&["audit", "--service", "items"]).is_ok());
        assert!(parse(&["audit", "--service", "gateway"]).is_err());
    }

    #[test]
    fn audit_records_render_who_what_when_why_and_states() {
        let record = AuditRecord {
            id: "a1".into(),
            actor: "user:1".into(),
            action: "LEDGER_FORCE_RELEASE_HOLD".into(),
            target_type: "hold".into(),
            target_id: "h1".into(),
            before: r#"{"status":"open"}"#.into(),
            after: r#"{"status":"released"}"#.into(),
            reason: "listing gone".into(),
            idempotency_key: "k1".into(),
            created_at: Some(prost_types::Timestamp { seconds: 0, nanos: 0 }),
        };
        assert_eq!(
            audit_lines(&record),
            [
                "audit a1 LEDGER_FORCE_RELEASE_HOLD hold h1  by user:1  at 1970-01-01T00:00:00.000Z  key k1",
                "  reason: listing gone",
                r#"  before: {"status":"open"}"#,
                r#"  after:  {"status":"released"}"#,
            ]
        );
    }
}
