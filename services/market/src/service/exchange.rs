//! Exchanges (docs/market.md, "Exchanges"): offer purchases and reward bundles, each a saga
//! whose steps call the ledger and the items service with keys derived from the
//! exchange's business event (`<event>:hold:<asset>`, `<event>:grant:<n>`,
//! `<event>:settle`, `<event>:revoke:<n>`, `<event>:release:<asset>`). One runner at a
//! time holds a claim on the exchange (the request that created it, a retry, or the
//! recovery worker) and saves it by a compare-and-set of its status and claim: when it is
//! final, or when a step cannot be taken now. A retry with the key, or the recovery
//! worker, resumes it at any step; a refusal at any step undoes what was done.

use economy_kit::identity::Caller;
use economy_proto::ledger::v1::PostingInput;

use super::{Market, listed_user, require};
use crate::clients::CallError;
use crate::clients::ledger::{leg, system, user};
use crate::domain::exchange::{REWARD_BUNDLE, SHOP_EXCHANGE, exchange_reference};
use crate::domain::offer::times;
use crate::domain::{Exchange, ExchangeKind, ExchangeStatus, GrantedItem, MarketError, Offer, Reward, step_key};
use crate::store::{Reserve, Save};

/// The mint / burn counterpart of reward assets.
const ISSUANCE_ACCOUNT: &str = "SYSTEM_ISSUANCE";
/// Reservations tried against an offer whose definition keeps changing.
const RESERVE_ATTEMPTS: usize = 3;

/// A validated GrantBundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBundle {
    /// The receiver.
    pub user_id: i64,
    /// What is given.
    pub reward: Reward,
    /// Business type (`''`: REWARD_BUNDLE).
    pub business_type: String,
    /// Correlation id (`''`: the business event).
    pub correlation_id: String,
}

impl Market {
    /// PurchaseOffer by the calling user with key `key`: `quantity` units of `offer_id`.
    /// Returns the completed exchange and whether the key had bought it. A retry with the
    /// key is answered from its exchange first, whatever the offer's state now. Errors:
    /// OFFER_NOT_FOUND, OFFER_NOT_ACTIVE, OFFER_SOLD_OUT, PURCHASE_LIMIT_REACHED,
    /// VALIDATION_FAILED (`quantity` too large for the offer), the failed exchange's
    /// reason (e.g. INSUFFICIENT_BALANCE with its asset: nothing charged, nothing kept),
    /// UPSTREAM_UNAVAILABLE (resumed by a retry or the recovery worker),
    /// EXCHANGE_IN_PROGRESS (another request with the key is running it),
    /// IDEMPOTENCY_KEY_REUSED, PERMISSION_DENIED (services do not buy).
    pub async fn purchase_offer(
        &self,
        caller: &Caller,
        key: &str,
        offer_id: &str,
        quantity: i64,
    ) -> Result<(Exchange, bool), MarketError> {
        let buyer = caller.user_id().ok_or_else(|| MarketError::PermissionDenied("only users buy offers".into()))?;
        let same = |exchange: &Exchange| {
            exchange.kind == ExchangeKind::OfferPurchase
                && exchange.user_id == buyer
                && exchange.offer_id == offer_id
                && exchange.quantity == quantity
        };
        if let Some(existing) = self.store.exchange_by_event(key).await? {
            return self.resume_exchange(caller, key, existing, same).await;
        }
        for _ in 0..RESERVE_ATTEMPTS {
            let offer = self.offer(offer_id).await?;
            let refusal = match offer.check_purchasable(quantity, self.now()) {
                Err(refusal) => refusal,
                Ok(()) => {
                    let exchange = self.new_purchase(key, buyer, &offer, quantity)?;
                    let claim = self.claim_until();
                    match self.store.reserve(&offer, &exchange, claim).await? {
                        Reserve::Reserved => return Ok((completed(self.run_claimed(exchange, claim).await?)?, false)),
                        Reserve::Duplicate => return self.resume_event(caller, key, same).await,
                        Reserve::Changed => continue,
                        refused => reservation_refusal(offer_id, refused),
                    }
                }
            };
            // A concurrent request with this key may have reserved first (its units are
            // what left none): it is answered from that exchange.
            return match self.store.exchange_by_event(key).await? {
                Some(existing) => self.resume_exchange(caller, key, existing, same).await,
                None => {
                    crate::metrics::offer_purchase_refused();
                    Err(refusal)
                }
            };
        }
        Err(MarketError::Unavailable("market"))
    }

    /// The exchange of a first purchase: price and reward of `quantity` units as the offer
    /// stands, correlated by its holds' reference, so its hold entries, closing entry and
    /// item events share one correlation id.
    fn new_purchase(&self, key: &str, buyer: i64, offer: &Offer, quantity: i64) -> Result<Exchange, MarketError> {
        let overflow = || MarketError::Invalid { field: "quantity", description: "amounts that fit 64 bits" };
        let id = uuid::Uuid::now_v7().to_string();
        Ok(Exchange {
            correlation_id: exchange_reference(&id),
            paid: times(&offer.definition.price, quantity).ok_or_else(overflow)?,
            reward: offer.definition.reward.times(quantity).ok_or_else(overflow)?,
            offer_id: offer.definition.id.clone(),
            quantity,
            business_type: SHOP_EXCHANGE.to_owned(),
            ..self.new_exchange(id, key, ExchangeKind::OfferPurchase, buyer)
        })
    }

    fn new_exchange(&self, id: String, key: &str, kind: ExchangeKind, user_id: i64) -> Exchange {
        Exchange {
            id,
            business_event_id: key.to_owned(),
            kind,
            user_id,
            offer_id: String::new(),
            quantity: 1,
            paid: Vec::new(),
            reward: Reward::default(),
            business_type: String::new(),
            correlation_id: String::new(),
            status: ExchangeStatus::Reserved,
            payment_hold_ids: Vec::new(),
            granted_items: Vec::new(),
            ledger_transaction_ids: Vec::new(),
            failure_reason: String::new(),
            failure_asset_code: String::new(),
            created_at: self.now(),
            finished_at: None,
        }
    }

    /// GrantBundle (admins and services) with key `key`. Returns the completed exchange
    /// and whether the key had granted it; a retry is answered from its exchange first.
    /// Errors: PERMISSION_DENIED, ASSET_NOT_FOUND, TEMPLATE_NOT_FOUND (first execution),
    /// the failed exchange's reason, UPSTREAM_UNAVAILABLE, EXCHANGE_IN_PROGRESS,
    /// IDEMPOTENCY_KEY_REUSED.
    pub async fn grant_bundle(
        &self,
        caller: &Caller,
        key: &str,
        bundle: NewBundle,
    ) -> Result<(Exchange, bool), MarketError> {
        require(caller.is_privileged(), "grant bundles")?;
        let business_type = if bundle.business_type.is_empty() { REWARD_BUNDLE } else { &bundle.business_type };
        let correlation_id = if bundle.correlation_id.is_empty() { key } else { &bundle.correlation_id };
        let same = |exchange: &Exchange| {
            exchange.kind == ExchangeKind::Bundle
                && exchange.user_id == bundle.user_id
                && exchange.reward == bundle.reward
                && exchange.business_type == business_type
                && exchange.correlation_id == correlation_id
        };
        if let Some(existing) = self.store.exchange_by_event(key).await? {
            return self.resume_exchange(caller, key, existing, same).await;
        }
        self.check_catalog(&[], &bundle.reward).await?;
        let exchange = Exchange {
            reward: bundle.reward.clone(),
            business_type: business_type.to_owned(),
            correlation_id: correlation_id.to_owned(),
            ..self.new_exchange(uuid::Uuid::now_v7().to_string(), key, ExchangeKind::Bundle, bundle.user_id)
        };
        let claim = self.claim_until();
        if !self.store.insert_bundle(&exchange, claim).await? {
            return self.resume_event(caller, key, same).await;
        }
        Ok((completed(self.run_claimed(exchange, claim).await?)?, false))
    }

    async fn resume_event(
        &self,
        caller: &Caller,
        key: &str,
        same: impl Fn(&Exchange) -> bool,
    ) -> Result<(Exchange, bool), MarketError> {
        let existing = self.store.exchange_by_event(key).await?;
        let existing = existing.ok_or_else(|| MarketError::Storage("duplicate exchange vanished".into()))?;
        self.resume_exchange(caller, key, existing, same).await
    }

    /// A retried exchange: the same request resumes it, then answers as the first time.
    async fn resume_exchange(
        &self,
        caller: &Caller,
        key: &str,
        exchange: Exchange,
        same: impl Fn(&Exchange) -> bool,
    ) -> Result<(Exchange, bool), MarketError> {
        if !same(&exchange) {
            return Err(MarketError::IdempotencyKeyReused(key.to_owned()));
        }
        require(caller.may_act_for(exchange.user_id), "see another user's exchange")?;
        Ok((completed(self.advance_exchange(exchange).await?)?, true))
    }

    /// Runs the exchange's saga until it is final or a step cannot be taken now
    /// (UPSTREAM_UNAVAILABLE, or an undo the items service refuses: an operator's case),
    /// after claiming it: EXCHANGE_IN_PROGRESS while another runner's claim runs.
    pub async fn advance_exchange(&self, exchange: Exchange) -> Result<Exchange, MarketError> {
        if exchange.status.is_final() {
            return Ok(exchange);
        }
        let claim = self.claim_until();
        if !self.store.claim_exchange(&exchange.id, self.now(), claim).await? {
            return self.claimed_elsewhere(&exchange.id).await;
        }
        self.run_claimed(exchange, claim).await
    }

    /// The end of a claim taken now.
    fn claim_until(&self) -> i64 {
        self.now().saturating_add(self.rules.exchange_lease_ms)
    }

    /// The exchange as another runner left it: final, or still running there.
    async fn claimed_elsewhere(&self, exchange_id: &str) -> Result<Exchange, MarketError> {
        let current = self.store.exchange(exchange_id).await?;
        let current = current.ok_or_else(|| MarketError::Storage("exchange vanished".into()))?;
        if current.status.is_final() { Ok(current) } else { Err(MarketError::ExchangeInProgress(current.id)) }
    }

    /// Runs the saga of `exchange`, claimed until `claim`, in memory: it saves when the
    /// exchange is final, when a step cannot be taken now (releasing the claim, so a retry
    /// or the worker resumes it at once), and before a step once half the claim is spent
    /// (renewing it). Every step's calls are keyed, so a step re-run after a crash is a
    /// replay downstream.
    async fn run_claimed(&self, mut exchange: Exchange, mut claim: i64) -> Result<Exchange, MarketError> {
        let mut saved = exchange.status;
        loop {
            let now = self.now();
            if exchange.status.is_final() {
                exchange.finished_at = Some(now);
                let save = Save { from: saved, claim, next_claim: 0 };
                return self.save_or_current(&save, exchange, now).await;
            }
            if now > claim.saturating_sub(self.rules.exchange_lease_ms / 2) {
                let save = Save { from: saved, claim, next_claim: self.claim_until() };
                exchange = self.save_or_current(&save, exchange, now).await?;
                (saved, claim) = (exchange.status, save.next_claim);
                continue;
            }
            let step = match exchange.status {
                ExchangeStatus::Reserved => self.hold_payment(&exchange).await,
                ExchangeStatus::Paid => self.grant_items(&exchange).await,
                ExchangeStatus::Granted => self.post_closing_entry(&exchange).await,
                _ => self.undo(&exchange).await,
            };
            match step {
                Ok(next) => exchange = next,
                Err(error) => {
                    let save = Save { from: saved, claim, next_claim: 0 };
                    self.save_or_current(&save, exchange, self.now()).await?;
                    return Err(error);
                }
            }
        }
    }

    /// Saves `exchange` as `save` says; when the claim was lost, the exchange as its new
    /// runner left it (EXCHANGE_IN_PROGRESS while that one runs).
    async fn save_or_current(&self, save: &Save, exchange: Exchange, now: i64) -> Result<Exchange, MarketError> {
        if self.store.save_exchange(save, &exchange, now).await? {
            if exchange.kind == ExchangeKind::OfferPurchase {
                crate::metrics::offer_purchase_moved(exchange.status);
            }
            return Ok(exchange);
        }
        self.claimed_elsewhere(&exchange.id).await
    }

    /// `reserved -> paid`: each price asset held (`<event>:hold:<asset>`); a refusal goes
    /// to `compensating` with the holds taken so far.
    async fn hold_payment(&self, exchange: &Exchange) -> Result<Exchange, MarketError> {
        let mut next = exchange.clone();
        next.payment_hold_ids.clear();
        for price in &exchange.paid {
            let key = step_key(&exchange.business_event_id, &format!("hold:{}", price.asset_code));
            let reference = exchange.reference();
            match self.ledger.create_hold(&key, exchange.user_id, &price.asset_code, price.amount, &reference).await {
                Ok((hold, transaction)) => {
                    next.payment_hold_ids.push(hold);
                    push_new(&mut next.ledger_transaction_ids, transaction);
                }
                Err(error) => {
                    next.failure_asset_code = price.asset_code.clone();
                    return refused(next, error);
                }
            }
        }
        next.status = ExchangeStatus::Paid;
        Ok(next)
    }

    /// `paid -> granted`: each item granted (`<event>:grant:<n>`); a refusal goes to
    /// `compensating` with the items granted so far.
    async fn grant_items(&self, exchange: &Exchange) -> Result<Exchange, MarketError> {
        let mut next = exchange.clone();
        next.granted_items.clear();
        for grant in exchange.item_grants() {
            let key = step_key(&exchange.business_event_id, &format!("grant:{}", grant.index));
            let (business_type, correlation_id) = (&exchange.business_type, &exchange.correlation_id);
            match self.items.grant(&key, exchange.user_id, &grant, business_type, correlation_id).await {
                Ok(item_instance_id) => {
                    next.granted_items.push(GrantedItem { item_instance_id, template_code: grant.template_code })
                }
                Err(error) => return refused(next, error),
            }
        }
        next.status = ExchangeStatus::Granted;
        Ok(next)
    }

    /// `granted -> completed`: one ledger entry (`<event>:settle`) settles every hold to
    /// the revenue account and credits the reward assets from SYSTEM_ISSUANCE; a refusal
    /// goes to `compensating`.
    async fn post_closing_entry(&self, exchange: &Exchange) -> Result<Exchange, MarketError> {
        let mut next = exchange.clone();
        next.status = ExchangeStatus::Completed;
        let postings = self.closing_legs(exchange);
        if postings.is_empty() && exchange.payment_hold_ids.is_empty() {
            return Ok(next);
        }
        let key = step_key(&exchange.business_event_id, "settle");
        let (business_type, correlation_id) = (&exchange.business_type, &exchange.correlation_id);
        let posted =
            self.ledger.post_entry(&key, postings, &exchange.payment_hold_ids, business_type, correlation_id).await;
        match posted {
            Ok(transaction) => {
                push_new(&mut next.ledger_transaction_ids, transaction);
                Ok(next)
            }
            Err(error) => refused(next, error),
        }
    }

    /// The revenue legs of the price and the issuance legs of the reward assets.
    fn closing_legs(&self, exchange: &Exchange) -> Vec<PostingInput> {
        let revenue =
            exchange.paid.iter().map(|paid| leg(system(&self.rules.revenue_account), &paid.asset_code, paid.amount));
        let rewards = exchange.reward.assets.iter().flat_map(|asset| {
            [
                leg(user(exchange.user_id), &asset.asset_code, asset.amount),
                leg(system(ISSUANCE_ACCOUNT), &asset.asset_code, -asset.amount),
            ]
        });
        revenue.chain(rewards).collect()
    }

    /// `compensating -> failed`: granted items revoked (`<event>:revoke:<n>`), then holds
    /// released (`<event>:release:<asset>`); the store returns the reservation with the
    /// move. A hold already resolved is left as it is; a revoke the items service refuses
    /// (the user already used or locked the item) stops here for an operator.
    async fn undo(&self, exchange: &Exchange) -> Result<Exchange, MarketError> {
        let event = &exchange.business_event_id;
        for (index, item) in exchange.granted_items.iter().enumerate() {
            let key = step_key(event, &format!("revoke:{index}"));
            let revoked = self
                .items
                .revoke(&key, &item.item_instance_id, &exchange.business_type, &exchange.correlation_id)
                .await;
            if let Err(error) = revoked {
                if let CallError::Refused { reason, .. } = &error {
                    tracing::error!(exchange_id = %exchange.id, item_id = %item.item_instance_id, reason, "an undone exchange's item cannot be revoked");
                }
                return Err(error.into());
            }
        }
        let mut next = exchange.clone();
        for (hold, paid) in exchange.payment_hold_ids.iter().zip(&exchange.paid) {
            let key = step_key(event, &format!("release:{}", paid.asset_code));
            match self.ledger.release_hold(&key, hold).await {
                Ok(transaction) => push_new(&mut next.ledger_transaction_ids, transaction),
                Err(CallError::Refused { reason, .. }) => {
                    tracing::warn!(exchange_id = %exchange.id, hold_id = %hold, reason, "hold of an undone exchange not released");
                }
                Err(error) => return Err(error.into()),
            }
        }
        next.status = ExchangeStatus::Failed;
        Ok(next)
    }

    /// GetExchange: its user, admins and services. Errors: EXCHANGE_NOT_FOUND,
    /// PERMISSION_DENIED.
    pub async fn exchange(&self, caller: &Caller, exchange_id: &str) -> Result<Exchange, MarketError> {
        let exchange = self.store.exchange(exchange_id).await?;
        let exchange = exchange.ok_or_else(|| MarketError::ExchangeNotFound(exchange_id.to_owned()))?;
        require(caller.may_act_for(exchange.user_id), "see another user's exchange")?;
        Ok(exchange)
    }

    /// ListExchanges: `user_id`'s exchanges (0: the caller's) below id `before` (`''`: from
    /// the newest), newest first; the user, admins and services.
    pub async fn exchanges(
        &self,
        caller: &Caller,
        user_id: i64,
        before: &str,
        limit: i64,
    ) -> Result<Vec<Exchange>, MarketError> {
        let user = listed_user(caller, user_id, "list another user's exchanges")?;
        Ok(self.store.exchanges_of(user, before, limit).await?)
    }

    /// ListStuckExchanges: unfinished exchanges created at least `older_than_seconds` ago
    /// (0 or less: 300), oldest first, at most 500. Admins and services.
    pub async fn stuck_exchanges(
        &self,
        caller: &Caller,
        older_than_seconds: i64,
    ) -> Result<Vec<Exchange>, MarketError> {
        require(caller.is_privileged(), "list stuck exchanges")?;
        let cutoff = economy_kit::outbox::stuck_cutoff(self.now(), older_than_seconds);
        Ok(self.store.stuck_exchanges(cutoff, 500).await?)
    }
}

/// Why a reservation took nothing (`refused` is neither reserved, duplicate nor changed).
fn reservation_refusal(offer_id: &str, refused: Reserve) -> MarketError {
    let offer_id = offer_id.to_owned();
    match refused {
        Reserve::SoldOut(remaining) => MarketError::OfferSoldOut { offer_id, remaining: Some(remaining) },
        Reserve::LimitReached(limit) => MarketError::PurchaseLimitReached { offer_id, limit },
        _ => MarketError::OfferNotActive(offer_id),
    }
}

/// A refusal moves `next` to `compensating` with its reason; unavailability is an error.
fn refused(mut next: Exchange, error: CallError) -> Result<Exchange, MarketError> {
    match error {
        CallError::Refused { reason, .. } => {
            next.status = ExchangeStatus::Compensating;
            next.failure_reason = reason;
            Ok(next)
        }
        CallError::Unavailable(service) => Err(MarketError::Unavailable(service)),
    }
}

/// Appends a transaction id once (a replayed step returns the same id).
fn push_new(ids: &mut Vec<String>, id: String) {
    if !id.is_empty() && !ids.contains(&id) {
        ids.push(id);
    }
}

/// A final exchange as the answer: completed, or the failure with its reason.
fn completed(exchange: Exchange) -> Result<Exchange, MarketError> {
    match exchange.status {
        ExchangeStatus::Completed => Ok(exchange),
        _ => Err(MarketError::ExchangeFailed {
            exchange_id: exchange.id,
            reason: exchange.failure_reason,
            asset_code: exchange.failure_asset_code,
        }),
    }
}
