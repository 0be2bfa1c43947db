//! The checks behind `economy.gateway.v1.OperationsService/CheckConsistency` and its scheduled job
//! (docs/gateway.md, "Consistency check"). The gateway is the one place that can read
//! every service, so it compares what they say about each other, acting as the service
//! `gateway`:
//!
//! - items locked by a market listing that is no longer open, or by a redemption order
//!   that is no longer open (`ITEM_LOCKED_BY_CLOSED_LISTING`, `ITEM_LOCKED_BY_CLOSED_ORDER`);
//! - listings on sale whose ledger hold is not open or whose item lock is gone
//!   (`LISTING_HOLD_MISSING`, `LISTING_LOCK_MISSING`);
//! - fulfilled orders whose item is not used (`FULFILLED_ITEM_NOT_USED`);
//! - pending orders past their expiry (`STALE_PENDING_ORDER`);
//! - outbox rows of redemption or market not delivered within the grace period
//!   (`OUTBOX_STUCK`: dead, or still retrying);
//! - exchanges (offer purchases, bundles) not finished within the grace period
//!   (`EXCHANGE_STUCK`);
//! - open ledger holds of an exchange (`market:exchange:<id>`) that does not exist or is
//!   final, so that nothing will settle or release them (`EXCHANGE_HOLD_ORPHANED`);
//! - items locked (on sale, pending redemption) longer than the items service's
//!   `items.stale_lock_after_days` (`ITEM_LOCKED_TOO_LONG`), from its `GetItemReport`,
//!   whose counts per template and status the report carries too.
//!
//! States younger than the grace period (an escrow return or a consume still in an
//! outbox) are not findings. Every check only reads, so it is safe on several replicas.

use std::sync::Arc;

use economy_kit::identity::Caller;
use economy_kit::jobs::Scheduler;
use economy_kit::schedule::Schedule;
use economy_kit::time::from_timestamp;
use economy_proto::gateway::v1 as pb;
use economy_proto::items::v1 as items;
use economy_proto::ledger::v1 as ledger;
use economy_proto::market::v1 as market;
use economy_proto::redemption::v1 as redemption;
use tonic::{Code, Status};

use crate::proxy::Gateway;
use crate::upstream::{Upstreams, upstream_error};

/// Default grace period, seconds.
pub(crate) const DEFAULT_GRACE_SECS: i64 = 300;
/// Page size of every scan.
const PAGE: i32 = 200;

/// The findings of one run.
#[derive(Debug, Default)]
pub struct Report {
    /// Every finding.
    pub findings: Vec<pb::Finding>,
    /// Entities checked.
    pub checked: i64,
    /// Item instances per template and status (the items report).
    pub item_statuses: Vec<items::ItemStatusCount>,
}

impl Report {
    fn add(&mut self, kind: &str, description: String, entities: &[(&str, &str)]) {
        let entities = entities.iter().map(|(name, id)| ((*name).to_owned(), (*id).to_owned())).collect();
        self.findings.push(pb::Finding { kind: kind.to_owned(), description, entities });
    }
}

fn millis(timestamp: Option<&prost_types::Timestamp>) -> i64 {
    timestamp.and_then(from_timestamp).unwrap_or(0)
}

/// Runs every check with `grace_ms` of tolerance for transient states.
pub async fn check(gateway: &Gateway, grace_ms: i64) -> Result<Report, Status> {
    let mut upstreams = Upstreams::new(gateway, &Caller::service("gateway"))?;
    let cutoff = gateway.clock.now_millis().saturating_sub(grace_ms);
    let mut report = Report::default();
    locked_by_listings(&mut upstreams, cutoff, &mut report).await?;
    locked_by_orders(&mut upstreams, cutoff, &mut report).await?;
    listings_on_sale(&mut upstreams, &mut report).await?;
    orders(&mut upstreams, cutoff, &mut report).await?;
    stuck_outboxes(&mut upstreams, grace_ms / 1000, &mut report).await?;
    stuck_exchanges(&mut upstreams, grace_ms / 1000, &mut report).await?;
    exchange_holds(&mut upstreams, cutoff, &mut report).await?;
    item_report(&mut upstreams, &mut report).await?;
    Ok(report)
}

/// Every locked item whose holder starts with `prefix`.
async fn locked(upstreams: &mut Upstreams, prefix: &str) -> Result<Vec<items::ItemInstance>, Status> {
    let (mut all, mut token) = (Vec::new(), String::new());
    loop {
        let request =
            items::ListLockedItemsRequest { holder_prefix: prefix.into(), page_size: PAGE, page_token: token };
        let page = upstreams.items.list_locked_items(request).await.map_err(upstream_error("items"))?.into_inner();
        all.extend(page.items);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

async fn locked_by_listings(upstreams: &mut Upstreams, cutoff: i64, report: &mut Report) -> Result<(), Status> {
    for item in locked(upstreams, "market:listing:").await? {
        report.checked += 1;
        let listing_id = item.lock_holder.trim_start_matches("market:listing:");
        let request = market::GetListingRequest { listing_id: listing_id.into() };
        let listing = match upstreams.market.get_listing(request).await {
            Ok(response) => response.into_inner().listing,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(upstream_error("market")(status)),
        };
        let open = [market::ListingStatus::Creating, market::ListingStatus::OnSale, market::ListingStatus::Selling];
        let (status, closed_at) = listing.as_ref().map_or((market::ListingStatus::Unspecified, 0), |listing| {
            (listing.status(), millis(listing.closed_at.as_ref()))
        });
        if !open.contains(&status) && closed_at <= cutoff {
            let description = format!("item {} is locked by listing {listing_id}, which is {status:?}", item.id);
            report.add("ITEM_LOCKED_BY_CLOSED_LISTING", description, &[("item", &item.id), ("listing", listing_id)]);
        }
    }
    Ok(())
}

async fn locked_by_orders(upstreams: &mut Upstreams, cutoff: i64, report: &mut Report) -> Result<(), Status> {
    for item in locked(upstreams, "redemption:").await? {
        report.checked += 1;
        let order_id = item.lock_holder.trim_start_matches("redemption:");
        let request = redemption::GetOrderRequest { order_id: order_id.into() };
        let order = match upstreams.redemption.get_order(request).await {
            Ok(response) => response.into_inner().order,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(upstream_error("redemption")(status)),
        };
        let open = [redemption::OrderStatus::Locking, redemption::OrderStatus::Pending];
        let (status, resolved_at) = order.as_ref().map_or((redemption::OrderStatus::Unspecified, 0), |order| {
            (order.status(), millis(order.resolved_at.as_ref()))
        });
        if !open.contains(&status) && resolved_at <= cutoff {
            let description = format!("item {} is locked by order {order_id}, which is {status:?}", item.id);
            report.add("ITEM_LOCKED_BY_CLOSED_ORDER", description, &[("item", &item.id), ("order", order_id)]);
        }
    }
    Ok(())
}

async fn listings_on_sale(upstreams: &mut Upstreams, report: &mut Report) -> Result<(), Status> {
    let mut token = String::new();
    loop {
        let request = market::ListListingsRequest { page_size: PAGE, page_token: token, ..Default::default() };
        let page = upstreams.market.list_listings(request).await.map_err(upstream_error("market"))?.into_inner();
        for listing in &page.listings {
            report.checked += 1;
            check_escrow(upstreams, listing, report).await?;
        }
        if page.next_page_token.is_empty() {
            return Ok(());
        }
        token = page.next_page_token;
    }
}

async fn check_escrow(upstreams: &mut Upstreams, listing: &market::Listing, report: &mut Report) -> Result<(), Status> {
    match &listing.offer {
        Some(market::listing::Offer::Asset(_)) => {
            let request = ledger::GetHoldRequest { hold_id: listing.hold_id.clone() };
            let hold = match upstreams.ledger.get_hold(request).await {
                Ok(response) => response.into_inner().hold,
                Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => None,
                Err(status) => return Err(upstream_error("ledger")(status)),
            };
            if hold.is_none_or(|hold| hold.status() != ledger::HoldStatus::Open) {
                let description = format!("listing {} is on sale but hold {} is not open", listing.id, listing.hold_id);
                report.add(
                    "LISTING_HOLD_MISSING",
                    description,
                    &[("listing", &listing.id), ("hold", &listing.hold_id)],
                );
            }
        }
        Some(market::listing::Offer::Item(offer)) => {
            let request = items::GetItemRequest { item_instance_id: offer.item_instance_id.clone() };
            let item = upstreams.items.get_item(request).await.map_err(upstream_error("items"))?.into_inner().item;
            if item.is_none_or(|item| item.lock_holder != format!("market:listing:{}", listing.id)) {
                let description = format!("listing {} is on sale but its item is not locked for it", listing.id);
                let entities = [("listing", listing.id.as_str()), ("item", offer.item_instance_id.as_str())];
                report.add("LISTING_LOCK_MISSING", description, &entities);
            }
        }
        None => {}
    }
    Ok(())
}

/// Every order in `status`.
async fn orders_in(
    upstreams: &mut Upstreams,
    status: redemption::OrderStatus,
) -> Result<Vec<redemption::Order>, Status> {
    let (mut all, mut token) = (Vec::new(), String::new());
    loop {
        let request = redemption::ListOrdersRequest {
            status: status.into(),
            page_size: PAGE,
            page_token: token,
            ..Default::default()
        };
        let page = upstreams.redemption.list_orders(request).await.map_err(upstream_error("redemption"))?.into_inner();
        all.extend(page.orders);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

async fn orders(upstreams: &mut Upstreams, cutoff: i64, report: &mut Report) -> Result<(), Status> {
    for order in orders_in(upstreams, redemption::OrderStatus::Fulfilled).await? {
        report.checked += 1;
        if millis(order.resolved_at.as_ref()) > cutoff {
            continue;
        }
        let request = items::GetItemRequest { item_instance_id: order.item_instance_id.clone() };
        let item = upstreams.items.get_item(request).await.map_err(upstream_error("items"))?.into_inner().item;
        if item.is_none_or(|item| item.status() != items::ItemStatus::Used) {
            let description =
                format!("order {} is fulfilled but item {} is not used", order.id, order.item_instance_id);
            report.add(
                "FULFILLED_ITEM_NOT_USED",
                description,
                &[("order", &order.id), ("item", &order.item_instance_id)],
            );
        }
    }
    for order in orders_in(upstreams, redemption::OrderStatus::Pending).await? {
        report.checked += 1;
        if millis(order.expires_at.as_ref()) <= cutoff {
            let description = format!("order {} is still pending past its expiry", order.id);
            report.add("STALE_PENDING_ORDER", description, &[("order", &order.id), ("item", &order.item_instance_id)]);
        }
    }
    Ok(())
}

async fn stuck_outboxes(upstreams: &mut Upstreams, older_than_seconds: i64, report: &mut Report) -> Result<(), Status> {
    let redemption = redemption::ListStuckOutboxRequest { older_than_seconds };
    let rows = upstreams.redemption.list_stuck_outbox(redemption).await.map_err(upstream_error("redemption"))?;
    for entry in rows.into_inner().entries {
        report.checked += 1;
        let description = format!(
            "redemption outbox row {} ({} of order {}) is {:?}",
            entry.id,
            entry.action,
            entry.order_id,
            entry.status()
        );
        report.add(
            "OUTBOX_STUCK",
            description,
            &[("service", "redemption"), ("outbox", &entry.id), ("order", &entry.order_id)],
        );
    }
    let market = market::ListStuckOutboxRequest { older_than_seconds };
    let rows = upstreams.market.list_stuck_outbox(market).await.map_err(upstream_error("market"))?;
    for entry in rows.into_inner().entries {
        report.checked += 1;
        let description =
            format!("market escrow return {} of listing {} is {:?}", entry.id, entry.listing_id, entry.status());
        report.add(
            "OUTBOX_STUCK",
            description,
            &[("service", "market"), ("outbox", &entry.id), ("listing", &entry.listing_id)],
        );
    }
    Ok(())
}

async fn stuck_exchanges(
    upstreams: &mut Upstreams,
    older_than_seconds: i64,
    report: &mut Report,
) -> Result<(), Status> {
    let request = market::ListStuckExchangesRequest { older_than_seconds };
    let stuck = upstreams.market.list_stuck_exchanges(request).await.map_err(upstream_error("market"))?;
    for exchange in stuck.into_inner().exchanges {
        report.checked += 1;
        let failure = match exchange.failure_reason.as_str() {
            "" => String::new(),
            reason => format!(" (failure reason {reason})"),
        };
        let description = format!(
            "exchange {} of user {} is still {:?}{failure} past the grace period",
            exchange.id,
            exchange.user_id,
            exchange.status()
        );
        let user = exchange.user_id.to_string();
        report.add("EXCHANGE_STUCK", description, &[("exchange", &exchange.id), ("user", &user)]);
    }
    Ok(())
}

/// The reference prefix of the ledger holds of exchanges (docs/market.md, "Exchanges").
const EXCHANGE_HOLD_PREFIX: &str = "market:exchange:";

/// Every open hold of every account whose reference starts with `prefix`.
async fn open_holds(upstreams: &mut Upstreams, prefix: &str) -> Result<Vec<ledger::Hold>, Status> {
    let (mut all, mut token) = (Vec::new(), String::new());
    loop {
        let request = ledger::ListHoldsRequest {
            account: None,
            status: ledger::HoldStatus::Open.into(),
            page_size: PAGE,
            page_token: token,
            reference_prefix: prefix.into(),
        };
        let page = upstreams.ledger.list_holds(request).await.map_err(upstream_error("ledger"))?.into_inner();
        all.extend(page.holds);
        if page.next_page_token.is_empty() {
            return Ok(all);
        }
        token = page.next_page_token;
    }
}

/// The status of exchange `id`; `Unspecified` when it does not exist.
async fn exchange_status(upstreams: &mut Upstreams, id: &str) -> Result<market::ExchangeStatus, Status> {
    let request = market::GetExchangeRequest { exchange_id: id.into() };
    match upstreams.market.get_exchange(request).await {
        Ok(response) => Ok(response.into_inner().exchange.map_or(market::ExchangeStatus::Unspecified, |e| e.status())),
        Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
            Ok(market::ExchangeStatus::Unspecified)
        }
        Err(status) => Err(upstream_error("market")(status)),
    }
}

/// True while hold `id` is open: read again, as its exchange may have resolved it since
/// the listing.
async fn still_open(upstreams: &mut Upstreams, id: &str) -> Result<bool, Status> {
    let request = ledger::GetHoldRequest { hold_id: id.into() };
    let hold = upstreams.ledger.get_hold(request).await.map_err(upstream_error("ledger"))?.into_inner().hold;
    Ok(hold.is_some_and(|hold| hold.status() == ledger::HoldStatus::Open))
}

async fn exchange_holds(upstreams: &mut Upstreams, cutoff: i64, report: &mut Report) -> Result<(), Status> {
    for hold in open_holds(upstreams, EXCHANGE_HOLD_PREFIX).await? {
        report.checked += 1;
        if millis(hold.created_at.as_ref()) > cutoff {
            continue;
        }
        let exchange_id = hold.reference.trim_start_matches(EXCHANGE_HOLD_PREFIX);
        let status = exchange_status(upstreams, exchange_id).await?;
        let final_or_missing = matches!(
            status,
            market::ExchangeStatus::Unspecified | market::ExchangeStatus::Completed | market::ExchangeStatus::Failed
        );
        if final_or_missing && still_open(upstreams, &hold.id).await? {
            report_orphaned_hold(report, &hold, exchange_id, status);
        }
    }
    Ok(())
}

fn report_orphaned_hold(report: &mut Report, hold: &ledger::Hold, exchange_id: &str, status: market::ExchangeStatus) {
    let exchange = match status {
        market::ExchangeStatus::Unspecified => "does not exist".to_owned(),
        status => format!("is {status:?}"),
    };
    let user = match hold.account.as_ref().and_then(|account| account.account.as_ref()) {
        Some(ledger::account_ref::Account::UserId(user)) => user.to_string(),
        Some(ledger::account_ref::Account::System(name)) => name.clone(),
        None => String::new(),
    };
    let description = format!(
        "hold {} of user {user} ({} {}) is open but its exchange {exchange_id} {exchange}: nothing will settle or release it",
        hold.id, hold.amount, hold.asset_code
    );
    let entities = [("hold", hold.id.as_str()), ("exchange", exchange_id), ("user", user.as_str())];
    report.add("EXCHANGE_HOLD_ORPHANED", description, &entities);
}

/// How many stale locks become findings of their own; beyond, one finding counts the rest.
const STALE_LOCKS_LISTED: i32 = 1000;

/// The items report: its counts, and a finding per lock held too long.
async fn item_report(upstreams: &mut Upstreams, report: &mut Report) -> Result<(), Status> {
    let request = items::GetItemReportRequest { stale_limit: STALE_LOCKS_LISTED };
    let items_report = upstreams.items.get_item_report(request).await.map_err(upstream_error("items"))?.into_inner();
    report.checked += items_report.statuses.iter().map(|count| count.count).sum::<i64>();
    let since = |item: &items::ItemInstance| from_timestamp_text(item.locked_at.as_ref());
    for item in &items_report.stale_locked {
        let description = format!(
            "item {} has been locked by {} since {}: longer than the items service allows",
            item.id,
            item.lock_holder,
            since(item)
        );
        report.add(
            "ITEM_LOCKED_TOO_LONG",
            description,
            &[("item", item.id.as_str()), ("holder", item.lock_holder.as_str())],
        );
    }
    let unlisted = items_report.stale_locked_count - items_report.stale_locked.len() as i64;
    if unlisted > 0 {
        let count = unlisted.to_string();
        let description = format!("{count} more items have been locked longer than the items service allows");
        report.add("ITEM_LOCKED_TOO_LONG", description, &[("count", count.as_str())]);
    }
    report.item_statuses = items_report.statuses;
    Ok(())
}

/// A timestamp as RFC 3339 UTC, or `unknown`.
fn from_timestamp_text(timestamp: Option<&prost_types::Timestamp>) -> String {
    timestamp.map_or_else(|| "unknown".into(), ToString::to_string)
}

/// Logs every finding and exports the count per kind.
pub(crate) fn export(report: &Report) {
    crate::metrics::consistency_run(report.findings.iter().map(|finding| finding.kind.as_str()));
    for finding in &report.findings {
        tracing::warn!(kind = %finding.kind, entities = ?finding.entities, "{}", finding.description);
    }
}

/// Runs the check on `schedule`, once per scheduled time across replicas (the
/// `gateway_consistency` job of `scheduler`; docs/operations.md, "Background jobs"); a run
/// answers its number of findings.
pub fn spawn(scheduler: &Scheduler, gateway: Arc<Gateway>, schedule: Schedule) {
    scheduler.spawn("gateway_consistency", schedule, move || {
        let gateway = gateway.clone();
        async move {
            let report = check(&gateway, DEFAULT_GRACE_SECS * 1000).await.map_err(|error| error.to_string())?;
            export(&report);
            Ok(u64::try_from(report.findings.len()).unwrap_or(u64::MAX))
        }
    });
}
