//! `economy backpack`, `economy check` and `economy admin idempotency …`: the gateway's
//! own services (`economy.gateway.v1`, proto/economy/gateway/v1/gateway.proto).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use economy_proto::gateway::v1 as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::{Bearer, KeyArgs};
use crate::commands::admin::{Reason, audit_lines};
use crate::commands::items::item_line;
use crate::output::{enum_name, timestamp};

/// A channel to the gateway that sends the bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// `economy backpack`.
#[derive(Debug, Args)]
pub struct Backpack {
    /// Whose backpack (default: `--user-id`; others need the admin role).
    #[arg(long, default_value_t = 0)]
    pub user: i64,
    /// Group items by template, status, expiry day and metadata.
    #[arg(long)]
    pub grouped: bool,
    /// Items per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// Runs `economy backpack`: asset lines, then item (or group) lines.
pub async fn backpack(channel: Authed, args: Backpack) -> anyhow::Result<ExitCode> {
    let mut client = pb::backpack_service_client::BackpackServiceClient::new(channel);
    let request = pb::GetBackpackRequest {
        user_id: args.user,
        page_size: args.page_size,
        page_token: args.page_token,
        grouped: args.grouped,
    };
    let backpack = client.get_backpack(request).await?.into_inner();
    println!("backpack of user:{}", backpack.user_id);
    for asset in &backpack.assets {
        println!(
            "asset {}  \"{}\"  available {}  frozen {}  total {}",
            asset.asset_code, asset.display_name, asset.available, asset.frozen, asset.total
        );
    }
    backpack.items.iter().for_each(|item| println!("{}", item_line(item)));
    for group in &backpack.groups {
        let bucket = enum_name(group.bucket().as_str_name(), "STATUS_BUCKET_");
        println!("{} {bucket} x{}  expires {}", group.template_code, group.count, timestamp(group.expiry_day.as_ref()));
    }
    if !backpack.next_page_token.is_empty() {
        println!("next page: {}", backpack.next_page_token);
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy check` (admin): prints each cross-service finding; exit status 3 when
/// there is any.
pub async fn check(channel: Authed) -> anyhow::Result<ExitCode> {
    let mut client = pb::operations_service_client::OperationsServiceClient::new(channel);
    let report = client.check_consistency(pb::CheckConsistencyRequest::default()).await?.into_inner();
    if report.findings.is_empty() {
        println!("services are consistent ({} entities checked)", report.checked);
        return Ok(ExitCode::SUCCESS);
    }
    for finding in &report.findings {
        let mut entities: Vec<String> = finding.entities.iter().map(|(name, id)| format!("{name}={id}")).collect();
        entities.sort();
        println!("{}  {}  {}", finding.kind, entities.join(" "), finding.description);
    }
    Ok(ExitCode::from(3))
}

/// `economy admin idempotency …`: the gateway's record of one user's idempotency key.
#[derive(Debug, Subcommand)]
pub enum IdempotencyCommand {
    /// Show a record: status, lease, business event, stored outcome's code.
    Show(RecordArgs),
    /// Release a record stuck in `processing` (audited): the key may be retried at once,
    /// and the retry replays what the service already did.
    Release {
        /// The record.
        #[command(flatten)]
        record: RecordArgs,
        /// Why.
        #[command(flatten)]
        reason: Reason,
        /// Key of this release (reuse it to retry the release safely).
        #[command(flatten)]
        key: KeyArgs,
    },
}

/// Names a record.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// The user who sent the key.
    #[arg(long)]
    pub user: i64,
    /// The idempotency key (a UUID, optionally prefixed `idem_`).
    pub key: String,
}

/// Runs `economy admin idempotency …` (admin).
pub async fn idempotency(channel: Authed, command: IdempotencyCommand) -> anyhow::Result<ExitCode> {
    let mut client = pb::operations_service_client::OperationsServiceClient::new(channel);
    match command {
        IdempotencyCommand::Show(args) => {
            let request = pb::GetIdempotencyRecordRequest { user_id: args.user, idempotency_key: args.key };
            let record = client.get_idempotency_record(request).await?.into_inner().record;
            record.iter().for_each(print_record);
        }
        IdempotencyCommand::Release { record, reason, key } => {
            let own_key = key.idempotency_key.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
            println!("idempotency key: {own_key}");
            let request = pb::ReleaseIdempotencyRecordRequest {
                idempotency_key: own_key,
                user_id: record.user,
                record_key: record.key,
                reason: reason.reason,
            };
            let released = client.release_idempotency_record(request).await?.into_inner();
            if released.replayed {
                println!("replayed: this key was applied before; nothing changed now");
            }
            released.record.iter().for_each(print_record);
            released.audit_record.iter().flat_map(audit_lines).for_each(|line| println!("{line}"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `record user:<id> <key> <status> <operation> event <id> …` and its detail lines.
fn print_record(record: &pb::IdempotencyRecord) {
    println!(
        "record user:{} {} {} {}  event {}  request {}",
        record.user_id,
        record.idempotency_key,
        record.status,
        record.canonical_operation,
        record.business_event_id,
        record.request_id
    );
    match record.status.as_str() {
        "processing" => println!("  lease until {}", timestamp(record.lease_expires_at.as_ref())),
        "completed" => println!(
            "  outcome code {}{}",
            record.response_code,
            if record.response_truncated { " (truncated)" } else { "" }
        ),
        _ => println!("  failure {}", record.failure_reason),
    }
    println!(
        "  created {}  updated {}  expires {}",
        timestamp(record.created_at.as_ref()),
        timestamp(record.updated_at.as_ref()),
        timestamp(record.expires_at.as_ref())
    );
}
