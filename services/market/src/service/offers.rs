//! The shop's offers (docs/market.md, "Offers"): definitions by admins, checked against
//! the ledger's catalog and the items' templates; reads for anyone.

use economy_kit::identity::Caller;

use super::{Market, require};
use crate::domain::{AssetAmount, MarketError, Offer, OfferDefinition, Reward};
use crate::store::Defined;

impl Market {
    /// DefineOffer (admins): stores `definition` as a PUT; returns the offer and what
    /// happened. Every price and reward asset must be in the ledger's catalog and every
    /// item template must exist. Errors: PERMISSION_DENIED, ASSET_NOT_FOUND,
    /// TEMPLATE_NOT_FOUND (the items service's), UPSTREAM_UNAVAILABLE.
    pub async fn define_offer(
        &self,
        caller: &Caller,
        definition: OfferDefinition,
    ) -> Result<(Offer, Defined), MarketError> {
        require(caller.is_admin(), "define offers")?;
        self.check_catalog(&definition.price, &definition.reward).await?;
        self.store.define_offer(&definition, self.now()).await
    }

    /// Refuses assets outside the ledger's catalog (ASSET_NOT_FOUND) and unknown item
    /// templates (TEMPLATE_NOT_FOUND) among `price` and `reward`.
    pub(super) async fn check_catalog(&self, price: &[AssetAmount], reward: &Reward) -> Result<(), MarketError> {
        let assets: Vec<&String> = price.iter().chain(&reward.assets).map(asset_code).collect();
        if !assets.is_empty() {
            let catalog = self.ledger.asset_codes().await?;
            if let Some(unknown) = assets.into_iter().find(|code| !catalog.contains(code)) {
                return Err(MarketError::AssetNotFound(unknown.clone()));
            }
        }
        for item in &reward.items {
            self.items.check_template(&item.template_code).await?;
        }
        Ok(())
    }

    /// DisableOffer (admins): stops its sales; repeating it changes nothing. Errors:
    /// PERMISSION_DENIED, OFFER_NOT_FOUND.
    pub async fn disable_offer(&self, caller: &Caller, offer_id: &str) -> Result<Offer, MarketError> {
        require(caller.is_admin(), "disable offers")?;
        self.store.disable_offer(offer_id, self.now()).await?;
        self.offer(offer_id).await
    }

    /// GetOffer (anyone). Errors: OFFER_NOT_FOUND.
    pub async fn offer(&self, offer_id: &str) -> Result<Offer, MarketError> {
        self.store.offer(offer_id).await?.ok_or_else(|| MarketError::OfferNotFound(offer_id.to_owned()))
    }

    /// ListOffers (anyone): up to `limit` offers after id `after`, by id; only the active
    /// ones now unless `all`.
    pub async fn offers(&self, all: bool, after: &str, limit: i64) -> Result<Vec<Offer>, MarketError> {
        let active_at = (!all).then(|| self.now());
        Ok(self.store.offers(active_at, after, limit).await?)
    }
}

fn asset_code(amount: &AssetAmount) -> &String {
    &amount.asset_code
}
