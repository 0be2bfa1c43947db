//! `economy template …` and `economy item …`: the item catalog and instances
//! (`economy.items.v1.ItemService`, proto/economy/items/v1/items.proto).

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use economy_kit::time::{duration_millis, now_millis, to_timestamp};
use economy_proto::items::v1 as pb;
use pb::item_service_client::ItemServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::{Bearer, KeyArgs};
use crate::output::{enum_name, timestamp};
use crate::parse;

/// The Items service, through the gateway.
pub type Items = ItemServiceClient<InterceptedService<Channel, Bearer>>;

/// `economy template …`.
#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Define a template, or update it (admin).
    Define(DefineTemplate),
    /// List the templates.
    List,
}

/// Kinds of item templates.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ItemKind {
    /// A voucher or coupon.
    Voucher,
    /// A physical product or prize.
    Product,
    /// A service entitlement.
    Service,
    /// A piece of equipment.
    Equipment,
    /// A card.
    Card,
    /// Anything else.
    Other,
}

impl From<ItemKind> for pb::ItemKind {
    fn from(kind: ItemKind) -> Self {
        match kind {
            ItemKind::Voucher => Self::Voucher,
            ItemKind::Product => Self::Product,
            ItemKind::Service => Self::Service,
            ItemKind::Equipment => Self::Equipment,
            ItemKind::Card => Self::Card,
            ItemKind::Other => Self::Other,
        }
    }
}

/// `economy template define`.
#[derive(Debug, Args)]
pub struct DefineTemplate {
    /// Template code (e.g. `coffee_voucher`).
    pub code: String,
    /// Display name.
    #[arg(long)]
    pub name: String,
    /// Kind of item.
    #[arg(long, value_enum)]
    pub kind: ItemKind,
    /// Validity of granted instances (e.g. `30d`); never expire when absent.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub validity: Option<Duration>,
    /// Instances can be redeemed with a code.
    #[arg(long)]
    pub redeemable: bool,
    /// Owners may consume instances directly.
    #[arg(long)]
    pub consumable: bool,
    /// Metadata entry `key=value`; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub meta: Vec<(String, String)>,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy item …`.
#[derive(Debug, Subcommand)]
pub enum ItemCommand {
    /// Grant an instance of a template to a user (admin).
    Grant(Grant),
    /// List a user's instances, newest first (or grouped).
    List(ListItems),
    /// Show one instance and its history.
    Show {
        /// The instance id.
        id: String,
    },
}

/// `economy item grant`.
#[derive(Debug, Args)]
pub struct Grant {
    /// The user receiving it.
    #[arg(long)]
    pub user: i64,
    /// Template code.
    #[arg(long)]
    pub template: String,
    /// Expiry from now (e.g. `7d`), instead of the template's validity.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub expires_in: Option<Duration>,
    /// Instance metadata `key=value`; repeat for more.
    #[arg(long = "meta", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub meta: Vec<(String, String)>,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `economy item list`.
#[derive(Debug, Args)]
pub struct ListItems {
    /// The owner.
    #[arg(long)]
    pub user: i64,
    /// Groups (template, status, expiry day, metadata) instead of instances.
    #[arg(long)]
    pub grouped: bool,
    /// Items (or groups) per page (1..500; default 50).
    #[arg(long, default_value_t = 0)]
    pub page_size: i32,
    /// `next page` token printed by the previous page.
    #[arg(long, default_value = "")]
    pub page_token: String,
}

/// `item <id> <template> <status>  owner user:<id>` plus lock holder and expiry.
pub fn item_line(item: &pb::ItemInstance) -> String {
    let mut line = format!(
        "item {} {} {}  owner user:{}",
        item.id,
        item.template_code,
        enum_name(item.status().as_str_name(), "ITEM_STATUS_"),
        item.owner_user_id
    );
    if !item.lock_holder.is_empty() {
        line.push_str(&format!("  holder {}", item.lock_holder));
    }
    if item.expires_at.is_some() {
        line.push_str(&format!("  expires {}", timestamp(item.expires_at.as_ref())));
    }
    line
}

/// Runs `economy template …`.
pub async fn template(items: &mut Items, command: TemplateCommand) -> anyhow::Result<ExitCode> {
    match command {
        TemplateCommand::Define(args) => {
            let validity = args.validity.map_or(0, |validity| duration_millis(validity) / 1000);
            let template = pb::ItemTemplate {
                code: args.code,
                display_name: args.name,
                kind: pb::ItemKind::from(args.kind).into(),
                default_validity_seconds: validity,
                redeemable: args.redeemable,
                consumable: args.consumable,
                metadata: args.meta.into_iter().collect::<HashMap<_, _>>(),
                ..Default::default()
            };
            let request = args.key.request(pb::DefineTemplateRequest { template: Some(template) })?;
            let response = items.define_template(request).await?.into_inner();
            let verb = if response.created { "created" } else { "updated" };
            let code = response.template.map(|template| template.code).unwrap_or_default();
            println!("template {verb}: {code}");
        }
        TemplateCommand::List => {
            let response = items.list_templates(pb::ListTemplatesRequest {}).await?.into_inner();
            if response.templates.is_empty() {
                println!("no templates defined");
            }
            for template in response.templates {
                let flags = [("redeemable", template.redeemable), ("consumable", template.consumable)];
                let flags: Vec<&str> = flags.iter().filter(|(_, on)| *on).map(|(name, _)| *name).collect();
                let kind = enum_name(template.kind().as_str_name(), "ITEM_KIND_");
                println!("{}  {kind}  \"{}\"  {}", template.code, template.display_name, flags.join(" "));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `economy item …`.
pub async fn item(items: &mut Items, command: ItemCommand) -> anyhow::Result<ExitCode> {
    match command {
        ItemCommand::Grant(args) => {
            let expires_at = args
                .expires_in
                .map(|ttl| now_millis().checked_add(duration_millis(ttl)).map(to_timestamp))
                .map(|at| at.context("--expires-in is too long"))
                .transpose()?;
            let request = pb::GrantItemRequest {
                owner_user_id: args.user,
                template_code: args.template,
                expires_at,
                metadata: args.meta.into_iter().collect(),
                reason: args.reason,
                ..Default::default()
            };
            let response = items.grant_item(args.key.request(request)?).await?.into_inner();
            if let Some(item) = response.item {
                println!("{}", item_line(&item));
            }
        }
        ItemCommand::List(args) => list(items, args).await?,
        ItemCommand::Show { id } => {
            let response = items.get_item(pb::GetItemRequest { item_instance_id: id.clone() }).await?.into_inner();
            if let Some(item) = response.item {
                println!("{}", item_line(&item));
            }
            let request = pb::ListItemEventsRequest { item_instance_id: id, page_size: 500, ..Default::default() };
            for event in items.list_item_events(request).await?.into_inner().events {
                let kind = enum_name(event.r#type().as_str_name(), "ITEM_EVENT_TYPE_");
                println!("  {}  {kind}  by {}  {}", timestamp(event.created_at.as_ref()), event.actor, event.holder);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn list(items: &mut Items, args: ListItems) -> anyhow::Result<()> {
    let request = pb::ListItemsRequest {
        owner_user_id: args.user,
        statuses: Vec::new(),
        page_size: args.page_size,
        page_token: args.page_token,
        grouped: args.grouped,
    };
    let response = items.list_items(request).await?.into_inner();
    if response.items.is_empty() && response.groups.is_empty() {
        println!("no items");
    }
    response.items.iter().for_each(|item| println!("{}", item_line(item)));
    for group in response.groups {
        let bucket = enum_name(group.bucket().as_str_name(), "STATUS_BUCKET_");
        println!("{} {bucket} x{}  expires {}", group.template_code, group.count, timestamp(group.expiry_day.as_ref()));
    }
    if !response.next_page_token.is_empty() {
        println!("next page: {}", response.next_page_token);
    }
    Ok(())
}
