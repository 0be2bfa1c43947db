//! The market's recovery worker (docs/market.md, "Outbox and recovery"), safe on several replicas at once (every
//! change is a compare-and-set; downstream calls are keyed): it resumes interrupted
//! creations, trades and exchanges, expires listings, and delivers escrow returns.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::domain::MarketError;
use crate::service::Market;

/// Rows one pass handles.
const BATCH: i64 = 100;

/// One recovery pass: work untouched for `stale_ms` is resumed.
pub async fn recover(market: &Market, stale_ms: i64) -> Result<usize, MarketError> {
    let cutoff = market.clock.now_millis().saturating_sub(stale_ms);
    let mut done = market.resume_stale_creations(cutoff, BATCH).await?;
    for trade in market.store.stalled_trades(cutoff, BATCH).await? {
        let id = trade.id.clone();
        match market.advance(trade).await {
            Ok(_) => done += 1,
            Err(error) => tracing::warn!(trade_id = %id, %error, "trade not resumed yet"),
        }
    }
    for exchange in market.store.stalled_exchanges(cutoff, market.clock.now_millis(), BATCH).await? {
        let id = exchange.id.clone();
        match market.advance_exchange(exchange).await {
            Ok(_) => done += 1,
            Err(error) => tracing::warn!(exchange_id = %id, %error, "exchange not resumed yet"),
        }
    }
    done += market.expire_due(BATCH).await?;
    done += market.dispatch("").await?;
    Ok(done)
}

/// Samples the listings open (`economy_market_listings_open`).
async fn sample_listings(market: &Market) {
    if !economy_kit::metrics::enabled() {
        return;
    }
    match market.store.open_listings().await {
        Ok(open) => crate::metrics::listings_open(open),
        Err(error) => tracing::warn!(%error, "open listings not counted"),
    }
}

/// Runs `recover` every `period` until `shutdown`, counting each pass
/// (`economy_job_runs_total{job="market_recovery"}`) and the outbox depth
/// (`economy_outbox_pending{service="market"}`).
pub fn spawn(market: Arc<Market>, period: Duration, stale: Duration, shutdown: CancellationToken) {
    let stale_ms = i64::try_from(stale.as_millis()).unwrap_or(i64::MAX);
    economy_kit::jobs::every(period, shutdown, move || {
        let market = market.clone();
        async move {
            let result = recover(&market, stale_ms).await;
            let done = result.as_ref().ok().map(|count| u64::try_from(*count).unwrap_or(u64::MAX));
            economy_kit::metrics::job_run("market_recovery", done);
            match result {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "market recovery pass"),
                Err(error) => tracing::error!(%error, "market recovery pass failed"),
            }
            // Outbox depth: every escrow return still owed, due or backing off.
            match market.store.pending_outbox().await {
                Ok(pending) => crate::metrics::outbox_pending(pending),
                Err(error) => tracing::warn!(%error, "outbox depth not measured"),
            }
            sample_listings(&market).await;
        }
    });
}
