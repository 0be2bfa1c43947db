//! The market's metrics (README.md, "Observability"): [`describe`] gives each its HELP
//! text and registers every series whose labels are known at start at zero; the other
//! functions record. All are no-ops while no recorder is installed.

use ::metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::domain::{ExchangeStatus, TradeStatus};

const TRADES: &str = "economy_market_trades_total";
const OFFER_PURCHASES: &str = "economy_market_offer_purchases_total";
const LISTINGS_OPEN: &str = "economy_market_listings_open";
const OUTBOX_PENDING: &str = "economy_outbox_pending";

/// The ends of a trade (docs/market.md, "Trades").
const TRADE_ENDS: [TradeStatus; 3] = [TradeStatus::Completed, TradeStatus::Failed, TradeStatus::Refunded];
/// How an offer purchase ended: its exchange `completed` or `failed`, or `refused`
/// before any (sold out, limit reached, not active).
const PURCHASE_OUTCOMES: [&str; 3] = ["completed", "failed", "refused"];

/// The interval jobs of the service (`economy_job_runs_total{job}`), at zero from start; the
/// scheduler registers the scheduled ones (`economy_kit::jobs::Scheduler`).
const JOBS: [&str; 1] = ["market_recovery"];

/// Describes every metric of the market and registers its known series at zero. Call
/// once the recorder is installed (`economy_kit::metrics`), before serving.
pub fn describe() {
    for job in JOBS {
        economy_kit::metrics::register_job(job);
    }
    describe_counter!(TRADES, "Listing purchases (trades) that ended, by outcome: completed, failed, refunded.");
    describe_counter!(
        OFFER_PURCHASES,
        "Offer purchases by outcome: completed, failed (its exchange undone), refused (before any exchange)."
    );
    describe_gauge!(LISTINGS_OPEN, "Listings on sale or being sold, sampled by each recovery pass.");
    describe_gauge!(
        OUTBOX_PENDING,
        "Outbox rows still owed (due or backing off), after each dispatch pass, by service."
    );
    for status in TRADE_ENDS {
        counter!(TRADES, "outcome" => status.as_str()).increment(0);
    }
    for outcome in PURCHASE_OUTCOMES {
        counter!(OFFER_PURCHASES, "outcome" => outcome).increment(0);
    }
    gauge!(LISTINGS_OPEN).increment(0.0);
    gauge!(OUTBOX_PENDING, "service" => "market").increment(0.0);
}

/// A trade moved to `status`: counted when that is an end.
pub fn trade_moved(status: TradeStatus) {
    if status.is_final() {
        counter!(TRADES, "outcome" => status.as_str()).increment(1);
    }
}

/// An offer purchase's exchange moved to `status`: counted when that is an end.
pub fn offer_purchase_moved(status: ExchangeStatus) {
    if status.is_final() {
        counter!(OFFER_PURCHASES, "outcome" => status.as_str()).increment(1);
    }
}

/// An offer purchase refused before any exchange.
pub fn offer_purchase_refused() {
    counter!(OFFER_PURCHASES, "outcome" => "refused").increment(1);
}

/// Listings open.
pub fn listings_open(count: i64) {
    gauge!(LISTINGS_OPEN).set(count as f64);
}

/// Outbox rows still owed.
pub fn outbox_pending(count: i64) {
    gauge!(OUTBOX_PENDING, "service" => "market").set(count as f64);
}
