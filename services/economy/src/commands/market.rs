//! `economy market …`: list, browse, buy and cancel
//! (`economy.market.v1.MarketService`, proto/economy/market/v1/market.proto).

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use economy_proto::market::v1 as pb;
use pb::market_service_client::MarketServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::{self, Bearer, KeyArgs};
use crate::output::{enum_name, timestamp};
use crate::parse::{self, AssetAmount};

/// The market, through the gateway.
pub type Market = MarketServiceClient<InterceptedService<Channel, Bearer>>;

/// `economy market …`.
#[derive(Debug, Subcommand)]
pub enum MarketCommand {
    /// Offer an asset amount (`--asset CODE:AMOUNT`) or an item (`--item ID`) for a price.
    Sell(Sell),
    /// Browse listings on sale.
    Browse(Browse),
    /// Buy a listing (as `--user-id`).
    Buy {
        /// The listing.
        listing: String,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// Cancel a listing on sale.
    Cancel {
        /// The listing.
        listing: String,
        /// Idempotency key.
        #[command(flatten)]
        key: KeyArgs,
    },
    /// A user's purchases and sales, newest first.
    Trades {
        /// The user (default: `--user-id`).
        #[arg(long, default_value_t = 0)]
        user: i64,
    },
}

/// `economy market sell`.
#[derive(Debug, Args)]
#[group(id = "goods", required = true, multiple = false, args = ["asset", "item"])]
pub struct Sell {
    /// `ASSET:AMOUNT` to sell, e.g. `red_shard:40`.
    #[arg(long, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub asset: Option<AssetAmount>,
    /// An item instance to sell.
    #[arg(long)]
    pub item: Option<String>,
    /// Price, `ASSET:AMOUNT`, e.g. `DIAMOND:139`.
    #[arg(long, value_name = "ASSET:AMOUNT", value_parser = parse::asset_amount)]
    pub price: AssetAmount,
    /// Idempotency key.
    #[command(flatten)]
    pub key: KeyArgs,
}

/// Orders of `browse`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Sort {
    /// Newest first.
    Newest,
    /// Cheapest first.
    Cheapest,
    /// Most expensive first.
    Priciest,
}

/// `economy market browse`.
#[derive(Debug, Args)]
pub struct Browse {
    /// Only listings of this asset.
    #[arg(long, default_value = "")]
    pub asset: String,
    /// Only listings of items of this template.
    #[arg(long, default_value = "")]
    pub template: String,
    /// Order.
    #[arg(long, value_enum, default_value_t = Sort::Newest)]
    pub sort: Sort,
}

/// `listing <id> <status> <goods> for <amount> <asset>  seller user:<id>`.
pub fn listing_line(listing: &pb::Listing) -> String {
    let goods = match &listing.offer {
        Some(pb::listing::Offer::Asset(asset)) => format!("{} {}", asset.amount, asset.asset_code),
        Some(pb::listing::Offer::Item(item)) => format!("item {} ({})", item.item_instance_id, item.template_code),
        None => "-".to_owned(),
    };
    let price = listing.price.as_ref().map_or("-".to_owned(), |price| format!("{} {}", price.amount, price.asset_code));
    let status = enum_name(listing.status().as_str_name(), "LISTING_STATUS_");
    format!("listing {} {status} {goods} for {price}  seller user:{}", listing.id, listing.seller_user_id)
}

/// `trade <id> <status> price P fee F seller gets N  buyer user:<b> seller user:<s>`.
pub fn trade_line(trade: &pb::Trade) -> String {
    let price = trade.price.as_ref().map_or("-".to_owned(), |price| format!("{} {}", price.amount, price.asset_code));
    format!(
        "trade {} {}  price {price}  fee {}  seller gets {}  buyer user:{}  seller user:{}  at {}",
        trade.id,
        enum_name(trade.status().as_str_name(), "TRADE_STATUS_"),
        trade.fee,
        trade.seller_net,
        trade.buyer_user_id,
        trade.seller_user_id,
        timestamp(trade.created_at.as_ref())
    )
}

/// Runs `economy market …`.
pub async fn run(market: &mut Market, command: MarketCommand) -> anyhow::Result<ExitCode> {
    match command {
        MarketCommand::Sell(args) => {
            let offer = match (args.asset, args.item) {
                (Some(asset), _) => pb::create_listing_request::Offer::Asset(pb::AssetOffer {
                    asset_code: asset.asset,
                    amount: asset.amount,
                }),
                (None, item) => pb::create_listing_request::Offer::Item(pb::ItemOffer {
                    item_instance_id: item.unwrap_or_default(),
                    template_code: String::new(),
                }),
            };
            let price = pb::Price { asset_code: args.price.asset, amount: args.price.amount };
            let message = pb::CreateListingRequest { offer: Some(offer), price: Some(price), ..Default::default() };
            let response = market.create_listing(args.key.request(message)?).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(listing) = response.listing {
                println!(
                    "{}{}",
                    listing_line(&listing),
                    if replayed || response.replayed { " (replayed)" } else { "" }
                );
            }
        }
        MarketCommand::Browse(args) => {
            let sort = match args.sort {
                Sort::Newest => pb::ListingSort::Newest,
                Sort::Cheapest => pb::ListingSort::PriceAscending,
                Sort::Priciest => pb::ListingSort::PriceDescending,
            };
            let request = pb::ListListingsRequest {
                asset_code: args.asset,
                item_template_code: args.template,
                sort: sort.into(),
                ..Default::default()
            };
            let listings = market.list_listings(request).await?.into_inner().listings;
            if listings.is_empty() {
                println!("no listings");
            }
            listings.iter().for_each(|listing| println!("{}", listing_line(listing)));
        }
        MarketCommand::Buy { listing, key } => {
            let request = key.request(pb::PurchaseListingRequest { listing_id: listing, ..Default::default() })?;
            let response = market.purchase_listing(request).await?;
            let replayed = client::replayed(&response);
            let response = response.into_inner();
            if let Some(trade) = response.trade {
                println!("{}{}", trade_line(&trade), if replayed || response.replayed { " (replayed)" } else { "" });
            }
        }
        MarketCommand::Cancel { listing, key } => {
            let request = key.request(pb::CancelListingRequest { listing_id: listing, ..Default::default() })?;
            if let Some(listing) = market.cancel_listing(request).await?.into_inner().listing {
                println!("{}", listing_line(&listing));
            }
        }
        MarketCommand::Trades { user } => {
            let trades = market.list_trades(pb::ListTradesRequest { user_id: user, ..Default::default() }).await?;
            let trades = trades.into_inner().trades;
            if trades.is_empty() {
                println!("no trades");
            }
            trades.iter().for_each(|trade| println!("{}", trade_line(trade)));
        }
    }
    Ok(ExitCode::SUCCESS)
}
