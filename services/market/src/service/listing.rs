//! Listing flows: create (escrow first), cancel, expiry, escrow returns and the
//! resumption of interrupted creations.

use economy_kit::identity::Caller;
use tracing::Instrument;

use super::{Market, require};
use crate::clients::CallError;
use crate::domain::{Goods, Listing, ListingStatus, MarketError, Price, escrow_holder, step_key};
use crate::store::Insert;

/// A validated CreateListing.
#[derive(Debug, Clone)]
pub struct NewListing {
    /// The seller (`None`: the calling user).
    pub seller_user_id: Option<i64>,
    /// What is sold (an item's template is looked up).
    pub offer: Goods,
    /// The price.
    pub price: Price,
    /// End of sale (`None`: the market's default).
    pub expires_at: Option<i64>,
}

/// Backoff of escrow returns, ms.
const MAX_BACKOFF_MS: i64 = 300_000;

impl Market {
    /// CreateListing: freezes the asset or locks the item, then puts the listing on sale.
    /// A retry with the key of a creation is answered from the listing it created before
    /// any rule that depends on the clock or on current state. An open listing of the
    /// item past its expiry is expired first, so it does not block a new one. Errors:
    /// VALIDATION_FAILED
    /// (`expires_at` not in the future, first execution only), PRICE_ASSET_NOT_ALLOWED,
    /// ITEM_NOT_OWNED, LISTING_ALREADY_OPEN, the ledger's or items' refusal
    /// (INSUFFICIENT_BALANCE, ITEM_NOT_AVAILABLE, …), UPSTREAM_UNAVAILABLE (resumed by a
    /// retry or the recovery worker), IDEMPOTENCY_KEY_REUSED, PERMISSION_DENIED.
    pub async fn create(&self, caller: &Caller, key: &str, new: NewListing) -> Result<(Listing, bool), MarketError> {
        let seller = match new.seller_user_id {
            Some(seller) => seller,
            None => caller.user_id().ok_or_else(|| MarketError::PermissionDenied("services name the seller".into()))?,
        };
        require(caller.may_act_for(seller), "list another user's goods")?;
        if let Some(existing) = self.store.listing_by_create_key(key).await? {
            return self.resume_create(key, existing, seller, &new).await;
        }
        let now = self.now();
        if new.expires_at.is_some_and(|expires_at| expires_at <= now) {
            return Err(MarketError::Invalid { field: "expires_at", description: "a valid instant in the future" });
        }
        if !self.rules.price_assets.contains(&new.price.asset) {
            return Err(MarketError::PriceAssetNotAllowed(new.price.asset));
        }
        let offer = match new.offer.clone() {
            Goods::Item { id, .. } => {
                let item = self.items.get(&id).await?;
                if item.owner_user_id != seller {
                    return Err(MarketError::ItemNotOwned(id));
                }
                Goods::Item { id, template: item.template_code }
            }
            offer => offer,
        };
        let default_expiry = (self.rules.default_listing_ttl_ms > 0).then(|| now + self.rules.default_listing_ttl_ms);
        let listing = Listing {
            id: uuid::Uuid::now_v7().to_string(),
            seller_user_id: seller,
            offer,
            price: new.price.clone(),
            status: ListingStatus::Creating,
            hold_id: None,
            created_at: now,
            expires_at: new.expires_at.or(default_expiry),
            closed_at: None,
        };
        for attempt in 0..2 {
            if self.store.insert_listing(&listing, key).await? == Insert::Created {
                return self.take_escrow(listing).await.map(|listing| (listing, false));
            }
            if let Some(existing) = self.store.listing_by_create_key(key).await? {
                return self.resume_create(key, existing, seller, &new).await;
            }
            // The item's open listing: one past its expiry is expired already, whether or
            // not the recovery worker ran. Make it so (its item unlocked at once) and try
            // once more.
            if attempt == 0 && self.expire_lapsed_listing_of(&listing.offer, now).await? {
                continue;
            }
            break;
        }
        Err(MarketError::ItemAlreadyListed(listing.offer_id().to_owned()))
    }

    /// Expires the open listing of the item `offer` sells when it is on sale past its
    /// expiry at `now`; true when it did.
    async fn expire_lapsed_listing_of(&self, offer: &Goods, now: i64) -> Result<bool, MarketError> {
        let Goods::Item { id, .. } = offer else { return Ok(false) };
        match self.store.open_listing_of_item(id).await? {
            Some(open) if open.status == ListingStatus::OnSale && open.is_expired(now) => {
                self.expire(&open.id, now).await
            }
            _ => Ok(false),
        }
    }

    /// A retried creation: the same request resumes an interrupted one or returns it.
    async fn resume_create(
        &self,
        key: &str,
        existing: Listing,
        seller: i64,
        new: &NewListing,
    ) -> Result<(Listing, bool), MarketError> {
        if existing.seller_user_id != seller || existing.price != new.price || !same_goods(&existing.offer, &new.offer)
        {
            return Err(MarketError::IdempotencyKeyReused(key.to_owned()));
        }
        match existing.status {
            ListingStatus::Creating => self.take_escrow(existing).await.map(|listing| (listing, true)),
            ListingStatus::Failed => Err(MarketError::ListingFailed(existing.id)),
            _ => Ok((existing, true)),
        }
    }

    /// Takes the escrow (key `<listing>:escrow`) and puts the listing on sale; a refusal
    /// fails it.
    pub(crate) async fn take_escrow(&self, listing: Listing) -> Result<Listing, MarketError> {
        let (key, holder) = (step_key(&listing.id, "escrow"), escrow_holder(&listing.id));
        let taken = match &listing.offer {
            Goods::Asset { code, amount } => self
                .ledger
                .create_hold(&key, listing.seller_user_id, code, *amount, &holder)
                .await
                .map(|(hold, _)| hold),
            Goods::Item { id, .. } => {
                self.items.lock(&key, id, &holder, listing.seller_user_id).await.map(|()| String::new())
            }
        };
        match taken {
            Ok(hold_id) => {
                self.store.put_on_sale(&listing.id, &hold_id, self.now()).await?;
                self.listing(&listing.id).await
            }
            Err(error @ CallError::Refused { .. }) => {
                self.store
                    .move_listing(&listing.id, ListingStatus::Creating, ListingStatus::Failed, self.now())
                    .await?;
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// CancelListing: the seller or an admin; `on_sale -> cancelled`, escrow returned. A
    /// retry with the key of a cancellation is answered from it first. A listing at or
    /// past its `expires_at` is expired instead (as the recovery worker would), escrow
    /// returned. Errors: LISTING_NOT_FOUND, LISTING_EXPIRED, LISTING_NOT_ON_SALE,
    /// PERMISSION_DENIED, IDEMPOTENCY_KEY_REUSED.
    pub async fn cancel(&self, caller: &Caller, key: &str, listing_id: &str) -> Result<(Listing, bool), MarketError> {
        let listing = self.listing(listing_id).await?;
        require(caller.may_act_for(listing.seller_user_id), "cancel another user's listing")?;
        if let Some(replay) = self.cancel_replay(key, &listing).await? {
            return Ok((replay, true));
        }
        let now = self.now();
        if listing.status == ListingStatus::OnSale && listing.is_expired(now) {
            // Expired from its instant, whether or not the recovery worker ran: make it so.
            self.expire(listing_id, now).await?;
        }
        listing.check_cancellable(now)?;
        let actor = caller.actor();
        if !self.store.close_unsold(listing_id, ListingStatus::Cancelled, Some((key, &actor)), now).await? {
            let current = self.listing(listing_id).await?;
            if let Some(replay) = self.cancel_replay(key, &current).await? {
                return Ok((replay, true));
            }
            current.check_cancellable(self.now())?;
        }
        self.return_escrow_now(listing_id).await;
        Ok((self.listing(listing_id).await?, false))
    }

    async fn cancel_replay(&self, key: &str, listing: &Listing) -> Result<Option<Listing>, MarketError> {
        match self.store.cancellation(key).await? {
            None => Ok(None),
            Some(id) if id == listing.id => Ok(Some(self.listing(&id).await?)),
            Some(_) => Err(MarketError::IdempotencyKeyReused(key.to_owned())),
        }
    }

    /// Expires listings on sale past their expiry; returns how many.
    pub async fn expire_due(&self, limit: i64) -> Result<usize, MarketError> {
        let mut expired = 0;
        for listing_id in self.store.expired_on_sale(self.now(), limit).await? {
            if self.expire(&listing_id, self.now()).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// `on_sale -> expired` of a listing whose expiry is at or before `now`, its escrow
    /// return owed and tried at once; false when it was not (or no longer) on sale and
    /// expired.
    async fn expire(&self, listing_id: &str, now: i64) -> Result<bool, MarketError> {
        let expired = self.store.close_unsold(listing_id, ListingStatus::Expired, None, now).await?;
        if expired {
            self.return_escrow_now(listing_id).await;
        }
        Ok(expired)
    }

    /// Resumes creations stuck in `creating` since before `cutoff`; returns how many.
    pub async fn resume_stale_creations(&self, cutoff: i64, limit: i64) -> Result<usize, MarketError> {
        let stale = self.store.stale_creating(cutoff, limit).await?;
        let count = stale.len();
        for listing in stale {
            let id = listing.id.clone();
            if let Err(error) = self.take_escrow(listing).await {
                tracing::warn!(listing_id = %id, %error, "interrupted listing creation not resumed yet");
            }
        }
        Ok(count)
    }

    async fn return_escrow_now(&self, listing_id: &str) {
        if let Err(error) = self.dispatch(listing_id).await {
            tracing::warn!(listing_id, %error, "escrow return deferred");
        }
    }

    /// Delivers due escrow returns (of `listing_id` only, unless empty); returns how many.
    pub async fn dispatch(&self, listing_id: &str) -> Result<usize, MarketError> {
        let now = self.now();
        let mut delivered = 0;
        for row in self.store.due_outbox(now, listing_id, 100).await? {
            // A short lease, renewed while the delivery is in flight: a row whose
            // dispatcher died is taken over within seconds.
            let Some(lease) = self.store.claim_outbox(&row.id, now).await? else {
                continue;
            };
            let listing = self.listing(&row.listing_id).await?;
            // The delivery joins the trace of the request that closed the listing.
            let span = tracing::info_span!(
                "outbox.deliver",
                otel.kind = "internal",
                listing_id = %row.listing_id,
                attempt = row.attempts + 1,
            );
            economy_kit::telemetry::set_remote_parent(&span, &row.trace_context);
            let delivery = async {
                let (result, lease) =
                    self.store.hold_outbox(lease, self.clock.as_ref(), self.return_escrow(&listing)).await;
                match result {
                    Ok(()) => Ok(self.store.finish_outbox(&lease, true, "", self.now()).await?),
                    // Already returned (released, unlocked): nothing left to do.
                    Err(CallError::Refused { reason, .. }) => {
                        self.store.finish_outbox(&lease, true, &reason, self.now()).await?;
                        Ok(false)
                    }
                    Err(error) => {
                        let backoff = (1_000_i64 << row.attempts.clamp(0, 16)).min(MAX_BACKOFF_MS);
                        self.store.retry_outbox(&lease, self.now() + backoff, error.reason()).await?;
                        Ok::<bool, MarketError>(false)
                    }
                }
            };
            if delivery.instrument(span).await? {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// Releases the listing's hold or unlocks its item (key `<listing>:return`).
    async fn return_escrow(&self, listing: &Listing) -> Result<(), CallError> {
        let (key, holder) = (step_key(&listing.id, "return"), escrow_holder(&listing.id));
        match (&listing.offer, &listing.hold_id) {
            (Goods::Asset { .. }, Some(hold_id)) => self.ledger.release_hold(&key, hold_id).await.map(|_| ()),
            (Goods::Asset { .. }, None) => Ok(()),
            (Goods::Item { id, .. }, _) => self.items.unlock(&key, id, &holder).await,
        }
    }
}

impl Listing {
    /// The asset code or item id sold.
    pub fn offer_id(&self) -> &str {
        match &self.offer {
            Goods::Asset { code, .. } => code,
            Goods::Item { id, .. } => id,
        }
    }
}

/// Whether two offers sell the same goods (an item's template is not compared: the
/// request does not know it).
fn same_goods(stored: &Goods, requested: &Goods) -> bool {
    match (stored, requested) {
        (Goods::Asset { code, amount }, Goods::Asset { code: other, amount: other_amount }) => {
            code == other && amount == other_amount
        }
        (Goods::Item { id, .. }, Goods::Item { id: other, .. }) => id == other,
        _ => false,
    }
}
