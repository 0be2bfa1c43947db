//! The redemption service's metrics (README.md, "Observability"): [`describe`] gives each
//! its HELP text and registers every series whose labels are known at start at zero; the
//! other functions record. All are no-ops while no recorder is installed.

use ::metrics::{counter, describe_counter, describe_gauge, gauge};

use crate::domain::OrderStatus;

const ORDERS: &str = "economy_redemption_orders_total";
const FULFILMENTS: &str = "economy_redemption_fulfilments_total";
const EXPIRED_BACKLOG: &str = "economy_redemption_orders_expired_backlog";
const OUTBOX_DEAD: &str = "economy_redemption_outbox_dead_total";
const OUTBOX_PENDING: &str = "economy_outbox_pending";

/// What happened to an order, as `economy_redemption_orders_total{outcome}` names it:
/// `created` when it is recorded, then the status it ends in.
const ORDER_OUTCOMES: [&str; 5] = ["created", "fulfilled", "cancelled", "expired", "failed"];

/// The interval jobs of the service (`economy_job_runs_total{job}`), at zero from start; the
/// scheduler registers the scheduled ones (`economy_kit::jobs::Scheduler`).
const JOBS: [&str; 2] = ["redemption_outbox", "redemption_stale_locking"];

/// Describes every metric of the service and registers its known series at zero. Call
/// once the recorder is installed (`economy_kit::metrics`), before serving.
pub fn describe() {
    for job in JOBS {
        economy_kit::metrics::register_job(job);
    }
    describe_counter!(
        ORDERS,
        "Redemption orders by outcome: created, then the end each reached (fulfilled, cancelled, expired, failed)."
    );
    describe_counter!(
        FULFILMENTS,
        "FulfillOrder attempts: ok (an order fulfilled) or failed (refused or not done, for any reason); replays not counted."
    );
    describe_gauge!(
        EXPIRED_BACKLOG,
        "Pending orders past their expiry that the expiry job's last pass left, sampled after each pass."
    );
    describe_counter!(OUTBOX_DEAD, "Outbox rows given up: Items refused to consume a fulfilled order's item.");
    describe_gauge!(
        OUTBOX_PENDING,
        "Outbox rows still owed (due or backing off), after each dispatch pass, by service."
    );
    for outcome in ORDER_OUTCOMES {
        counter!(ORDERS, "outcome" => outcome).increment(0);
    }
    for outcome in ["ok", "failed"] {
        counter!(FULFILMENTS, "outcome" => outcome).increment(0);
    }
    gauge!(EXPIRED_BACKLOG).increment(0.0);
    counter!(OUTBOX_DEAD).increment(0);
    gauge!(OUTBOX_PENDING, "service" => "redemption").increment(0.0);
}

/// An order recorded (`created`).
pub fn order_created() {
    counter!(ORDERS, "outcome" => "created").increment(1);
}

/// An order moved to `status` (an end: fulfilled, cancelled, expired, failed).
pub fn order_ended(status: OrderStatus) {
    counter!(ORDERS, "outcome" => status.as_str()).increment(1);
}

/// A FulfillOrder attempt that fulfilled an order (`ok`) or not (`failed`).
pub fn fulfilment(ok: bool) {
    counter!(FULFILMENTS, "outcome" => if ok { "ok" } else { "failed" }).increment(1);
}

/// Pending orders past their expiry.
pub fn expired_backlog(count: i64) {
    gauge!(EXPIRED_BACKLOG).set(count as f64);
}

/// An outbox row given up.
pub fn outbox_dead() {
    counter!(OUTBOX_DEAD).increment(1);
}

/// Outbox rows still owed.
pub fn outbox_pending(count: i64) {
    gauge!(OUTBOX_PENDING, "service" => "redemption").set(count as f64);
}
