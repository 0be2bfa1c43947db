//! `economy redeem …`: one-time redemption codes
//! (`economy.redemption.v1.RedemptionService`, proto/economy/redemption/v1/redemption.proto).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use economy_proto::redemption::v1 as pb;
use pb::redemption_service_client::RedemptionServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::{self, Bearer, KeyArgs};
use crate::output::{enum_name, timestamp};

/// The Redemption service, through the gateway.
pub type Redemption = RedemptionServiceClient<InterceptedService<Channel, Bearer>>;

/// `economy redeem …`.
#[derive(Debug, Subcommand)]
pub enum RedeemCommand {
    /// Create a redemption order for an item and print its code (shown only once).
    Create {
        /// The item instance.
        #[arg(long)]
        item: String,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Redeem a code (merchant staff): the item is consumed.
    Fulfill {
        /// The code, e.g. `ABCD-EFGH-JK23`.
        code: String,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Cancel a pending order; its item is unlocked.
    Cancel(Cancel),
    /// Give a pending order a new code (the old one stops working).
    Reissue {
        /// The order.
        order: String,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Show one order.
    Show {
        /// The order.
        order: String,
    },
    /// List a user's orders, newest first.
    List {
        /// The owner.
        #[arg(long)]
        user: i64,
    },
}

/// `economy redeem cancel`.
#[derive(Debug, Args)]
pub struct Cancel {
    /// The order.
    pub order: String,
    /// Why.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// `order <id> <status>  item <item id>  owner user:<id>  expires <instant>`.
pub fn order_line(order: &pb::Order) -> String {
    format!(
        "order {} {}  item {}  owner user:{}  expires {}",
        order.id,
        enum_name(order.status().as_str_name(), "ORDER_STATUS_"),
        order.item_instance_id,
        order.owner_user_id,
        timestamp(order.expires_at.as_ref())
    )
}

fn print_order(order: Option<&pb::Order>, replayed: bool) {
    if let Some(order) = order {
        println!("{}{}", order_line(order), if replayed { " (replayed)" } else { "" });
    }
}

/// Runs `economy redeem …`.
pub async fn run(redemption: &mut Redemption, command: RedeemCommand) -> anyhow::Result<ExitCode> {
    match command {
        RedeemCommand::Create { item, key } => {
            let request = key.request(pb::CreateOrderRequest { item_instance_id: item, ..Default::default() })?;
            let response = redemption.create_order(request).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            print_order(response.order.as_ref(), replayed || response.replayed);
            print_code(&response.code);
        }
        RedeemCommand::Fulfill { code, key } => {
            let request = key.request(pb::FulfillOrderRequest { code, ..Default::default() })?;
            let response = redemption.fulfill_order(request).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            print_order(response.order.as_ref(), replayed || response.replayed);
            println!("item {} consumed", response.item_instance_id);
        }
        RedeemCommand::Cancel(args) => {
            let message = pb::CancelOrderRequest { order_id: args.order, reason: args.reason, ..Default::default() };
            let response = redemption.cancel_order(args.key.request(message)?).await?.into_inner();
            print_order(response.order.as_ref(), response.replayed);
        }
        RedeemCommand::Reissue { order, key } => {
            let request = key.request(pb::ReissueCodeRequest { order_id: order, ..Default::default() })?;
            let response = redemption.reissue_code(request).await?.into_inner();
            print_order(response.order.as_ref(), false);
            print_code(&response.code);
        }
        RedeemCommand::Show { order } => {
            let response = redemption.get_order(pb::GetOrderRequest { order_id: order }).await?.into_inner();
            print_order(response.order.as_ref(), false);
        }
        RedeemCommand::List { user } => {
            let request = pb::ListOrdersRequest { owner_user_id: user, ..Default::default() };
            let response = redemption.list_orders(request).await?.into_inner();
            if response.orders.is_empty() {
                println!("no orders");
            }
            response.orders.iter().for_each(|order| println!("{}", order_line(order)));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the code, or says why there is none (a replay never shows it again).
fn print_code(code: &str) {
    match code {
        "" => println!("code not shown again (use `economy redeem reissue <order>` for a new one)"),
        code => println!("code: {code}"),
    }
}
