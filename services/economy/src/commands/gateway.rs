//! `economy backpack` and `economy check`: the gateway's own services
//! (`economy.gateway.v1`, proto/economy/gateway/v1/gateway.proto).

use std::process::ExitCode;

use clap::Args;
use economy_proto::gateway::v1 as pb;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::Bearer;
use crate::commands::items::item_line;
use crate::output::{enum_name, timestamp};

type Authed = InterceptedService<Channel, Bearer>;

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
