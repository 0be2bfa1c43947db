//! Purchases (docs/market.md, "Purchases"): exactly one buyer wins a listing, then the trade's
//! saga runs step by step, each step a downstream call keyed `<business event>:<step>`
//! followed by a compare-and-set of the trade (and at the end of the listing).

use economy_kit::identity::Caller;

use super::{Market, require};
use crate::clients::CallError;
use crate::clients::ledger::{MARKET_TRADE, leg, system, user};
use crate::domain::{
    Goods, Listing, ListingStatus, MarketError, Trade, TradeStatus, escrow_holder, split_price, step_key,
};
use crate::store::{Begin, Step};

/// The platform's fee account (docs/market.md, "Purchases").
pub const FEE_ACCOUNT: &str = "SYSTEM_PLATFORM_FEE";

impl Market {
    /// PurchaseListing by the calling user with key `key` (the trade's business event).
    /// Returns the completed trade, the sold listing and whether the key had bought it.
    /// A retry with the key of a purchase is answered from its trade first, whatever the
    /// listing's state or expiry now. Errors: LISTING_NOT_FOUND, LISTING_EXPIRED (at or
    /// past its `expires_at`, even before the recovery worker marks it), LISTING_NOT_ON_SALE
    /// (another buyer won, cancelled), OWN_LISTING, TRADE_FAILED with the refusal's reason (INSUFFICIENT_BALANCE:
    /// nothing moved; or the item could not be delivered: the buyer was refunded),
    /// UPSTREAM_UNAVAILABLE (resumed by a retry with the key or the recovery worker),
    /// IDEMPOTENCY_KEY_REUSED.
    pub async fn purchase(
        &self,
        caller: &Caller,
        key: &str,
        listing_id: &str,
    ) -> Result<(Trade, Listing, bool), MarketError> {
        let buyer = caller.user_id().ok_or_else(|| MarketError::PermissionDenied("only users buy".into()))?;
        if let Some(trade) = self.store.trade_by_event(key).await? {
            return self.resume(caller, key, listing_id, trade).await;
        }
        let listing = self.listing(listing_id).await?;
        listing.check_purchasable(buyer, self.now())?;
        let (fee, seller_net) = split_price(listing.price.amount, self.rules.fee_bps);
        let trade = Trade {
            id: uuid::Uuid::now_v7().to_string(),
            business_event_id: key.to_owned(),
            listing_id: listing.id.clone(),
            buyer_user_id: buyer,
            seller_user_id: listing.seller_user_id,
            price_asset: listing.price.asset.clone(),
            price: listing.price.amount,
            fee,
            seller_net,
            status: TradeStatus::Pending,
            payment_hold_id: None,
            ledger_transaction_ids: Vec::new(),
            failure_reason: String::new(),
            created_at: self.now(),
            finished_at: None,
        };
        match self.store.begin_trade(&trade).await? {
            Begin::Started => {
                let trade = self.run_saga(&listing, trade).await?;
                Ok((finished(trade)?, self.listing(listing_id).await?, false))
            }
            Begin::Duplicate => match self.store.trade_by_event(key).await? {
                Some(trade) => self.resume(caller, key, listing_id, trade).await,
                None => Err(MarketError::Storage("duplicate trade vanished".into())),
            },
            Begin::NotOnSale => {
                let current = self.listing(listing_id).await?;
                current.check_purchasable(buyer, self.now())?;
                Err(MarketError::ListingNotOnSale { listing_id: current.id, status: current.status.as_str() })
            }
        }
    }

    /// A retried purchase: resumes its trade, then answers as the first time would have.
    async fn resume(
        &self,
        caller: &Caller,
        key: &str,
        listing_id: &str,
        trade: Trade,
    ) -> Result<(Trade, Listing, bool), MarketError> {
        if trade.listing_id != listing_id {
            return Err(MarketError::IdempotencyKeyReused(key.to_owned()));
        }
        require(caller.may_act_for(trade.buyer_user_id), "see another user's trade")?;
        let trade = finished(self.advance(trade).await?)?;
        Ok((trade, self.listing(listing_id).await?, true))
    }

    /// Runs the trade's saga until it is final or a step cannot be taken now.
    pub async fn advance(&self, trade: Trade) -> Result<Trade, MarketError> {
        let listing = self.listing(&trade.listing_id).await?;
        self.run_saga(&listing, trade).await
    }

    /// [`Self::advance`] with the trade's `listing` at hand (its offer and hold never
    /// change once it is on sale).
    async fn run_saga(&self, listing: &Listing, mut trade: Trade) -> Result<Trade, MarketError> {
        while !trade.status.is_final() {
            let progressed = self.step(listing, &trade).await?;
            let current = self.store.trade(&trade.id).await?;
            trade = current.ok_or_else(|| MarketError::Storage(format!("trade {} vanished", trade.id).into()))?;
            if !progressed && !trade.status.is_final() {
                // Another worker holds the step; it will finish it.
                return Err(MarketError::Unavailable("market"));
            }
        }
        Ok(trade)
    }

    /// One saga step; false when another worker applied it first.
    async fn step(&self, listing: &Listing, trade: &Trade) -> Result<bool, MarketError> {
        let event = &trade.business_event_id;
        let now = self.now();
        let sold = Some((listing.id.as_str(), ListingStatus::Selling, ListingStatus::Sold));
        let back_on_sale = Some((listing.id.as_str(), ListingStatus::Selling, ListingStatus::OnSale));
        let outcome = match (&listing.offer, trade.status) {
            (Goods::Asset { code, amount }, TradeStatus::Pending) => {
                let hold = listing.hold_id.as_deref().unwrap_or_default();
                let mut postings = self.payment_legs(trade);
                postings.push(leg(user(trade.buyer_user_id), code, *amount));
                let paid = self
                    .ledger
                    .post_entry(&step_key(event, "payment"), postings, &[hold.to_owned()], MARKET_TRADE, &trade.id)
                    .await;
                self.record(trade, paid, TradeStatus::Completed, sold, TradeStatus::Failed, back_on_sale).await?
            }
            (Goods::Item { .. }, TradeStatus::Pending) => {
                let reference = format!("market:trade:{}", trade.id);
                let key = step_key(event, "payment");
                let held = self
                    .ledger
                    .create_hold(&key, trade.buyer_user_id, &trade.price_asset, trade.price, &reference)
                    .await;
                match held {
                    Ok((hold, transaction)) => {
                        let mut step = Step::new(&trade.id, TradeStatus::Pending, TradeStatus::Paid, now);
                        step.payment_hold_id = &hold;
                        step.transaction_id = &transaction;
                        self.store.step(&step).await?
                    }
                    Err(error) => self.refused(trade, error, TradeStatus::Failed, back_on_sale).await?,
                }
            }
            (Goods::Item { id, .. }, TradeStatus::Paid) => {
                let key = step_key(event, "transfer");
                match self.items.transfer(&key, id, &escrow_holder(&listing.id), trade.buyer_user_id).await {
                    Ok(()) => {
                        self.store.step(&Step::new(&trade.id, TradeStatus::Paid, TradeStatus::Delivered, now)).await?
                    }
                    Err(error) => self.refused(trade, error, TradeStatus::Refunding, None).await?,
                }
            }
            (Goods::Item { .. }, TradeStatus::Delivered) => {
                let hold = trade.payment_hold_id.as_deref().unwrap_or_default();
                let legs = self.payout_legs(trade);
                let paid = self.ledger.settle_hold(&step_key(event, "payout"), hold, legs, &trade.id).await;
                match paid {
                    Ok(transaction) => self.finish(trade, TradeStatus::Completed, &transaction, sold).await?,
                    Err(error) => {
                        log_payout_failure(&trade.id, &error);
                        return Err(error.into());
                    }
                }
            }
            (Goods::Item { id, .. }, TradeStatus::Refunding) => {
                let hold = trade.payment_hold_id.as_deref().unwrap_or_default();
                let transaction = self.ledger.release_hold(&step_key(event, "refund"), hold).await?;
                let still_listed = self.items.get(id).await?.lock_holder == escrow_holder(&listing.id);
                let to = if still_listed { ListingStatus::OnSale } else { ListingStatus::Failed };
                self.finish(trade, TradeStatus::Refunded, &transaction, Some((&listing.id, ListingStatus::Selling, to)))
                    .await?
            }
            _ => false,
        };
        Ok(outcome)
    }

    /// The buyer's payment split between seller and platform (zero legs left out).
    fn payment_legs(&self, trade: &Trade) -> Vec<economy_proto::ledger::v1::PostingInput> {
        let mut legs = vec![leg(user(trade.buyer_user_id), &trade.price_asset, -trade.price)];
        legs.extend(self.payout_legs(trade));
        legs
    }

    /// Seller net and platform fee, each when non-zero.
    fn payout_legs(&self, trade: &Trade) -> Vec<economy_proto::ledger::v1::PostingInput> {
        [(user(trade.seller_user_id), trade.seller_net), (system(FEE_ACCOUNT), trade.fee)]
            .into_iter()
            .filter(|(_, amount)| *amount > 0)
            .map(|(account, amount)| leg(account, &trade.price_asset, amount))
            .collect()
    }

    /// Records a one-call step: success -> `done` (moving the listing with `on_done`),
    /// refusal -> `refused_to` (moving it with `on_refused`), unavailability -> error.
    async fn record(
        &self,
        trade: &Trade,
        outcome: Result<String, CallError>,
        done: TradeStatus,
        on_done: Option<(&str, ListingStatus, ListingStatus)>,
        refused_to: TradeStatus,
        on_refused: Option<(&str, ListingStatus, ListingStatus)>,
    ) -> Result<bool, MarketError> {
        match outcome {
            Ok(transaction) => self.finish(trade, done, &transaction, on_done).await,
            Err(error) => self.refused(trade, error, refused_to, on_refused).await,
        }
    }

    async fn finish(
        &self,
        trade: &Trade,
        to: TradeStatus,
        transaction: &str,
        listing: Option<(&str, ListingStatus, ListingStatus)>,
    ) -> Result<bool, MarketError> {
        let mut step = Step::new(&trade.id, trade.status, to, self.now());
        step.transaction_id = transaction;
        step.listing = listing;
        self.moved(&step).await
    }

    /// Applies `step`, counting the trade's end when it moved to one.
    async fn moved(&self, step: &Step<'_>) -> Result<bool, MarketError> {
        let moved = self.store.step(step).await?;
        if moved {
            crate::metrics::trade_moved(step.to);
        }
        Ok(moved)
    }

    /// A refusal moves the trade to `to` with its reason; unavailability is an error.
    async fn refused(
        &self,
        trade: &Trade,
        error: CallError,
        to: TradeStatus,
        listing: Option<(&str, ListingStatus, ListingStatus)>,
    ) -> Result<bool, MarketError> {
        if let CallError::Unavailable(_) = error {
            return Err(error.into());
        }
        let mut step = Step::new(&trade.id, trade.status, to, self.now());
        step.failure_reason = error.reason();
        step.listing = listing;
        self.moved(&step).await
    }
}

/// How bad a failed payout of a delivered item is: a refusal by the ledger needs an
/// operator (the buyer has the item, the seller is not paid yet); an outage (unavailable,
/// deadline exceeded, connection refused) is retried by the caller's retry or the recovery
/// worker with the same key.
fn payout_failure_level(error: &CallError) -> tracing::Level {
    match error {
        CallError::Refused { .. } => tracing::Level::ERROR,
        CallError::Unavailable(_) => tracing::Level::WARN,
    }
}

fn log_payout_failure(trade_id: &str, error: &CallError) {
    if payout_failure_level(error) == tracing::Level::ERROR {
        tracing::error!(trade_id, reason = error.reason(), "payout of a delivered item refused");
    } else {
        tracing::warn!(trade_id, reason = error.reason(), "payout of a delivered item deferred; retried later");
    }
}

/// A final trade as the purchase's answer: completed, or TRADE_FAILED with its reason.
fn finished(trade: Trade) -> Result<Trade, MarketError> {
    match trade.status {
        TradeStatus::Completed => Ok(trade),
        _ => Err(MarketError::TradeFailed { trade_id: trade.id, reason: trade.failure_reason }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_refused_payout_is_an_error_an_outage_is_a_retry() {
        let refused = CallError::Refused {
            code: tonic::Code::FailedPrecondition as i32,
            domain: "economy.ledger".into(),
            reason: "HOLD_ALREADY_RESOLVED".into(),
            message: "resolved".into(),
        };
        assert_eq!(payout_failure_level(&refused), tracing::Level::ERROR);
        for status in [
            tonic::Status::unavailable("connection refused"),
            tonic::Status::deadline_exceeded("timeout"),
            tonic::Status::unknown("transport error"),
        ] {
            let error = CallError::from_status("ledger", &status);
            assert_eq!(payout_failure_level(&error), tracing::Level::WARN, "{status:?}");
        }
    }
}
