//! Items calls: the escrow of listed items (lock / unlock by holder
//! `market:listing:<id>`), their delivery to the buyer (transfer), and the grants of
//! exchanges (grant, revoke when undone, template look-up).

use economy_kit::identity::Signer;
use economy_proto::items::v1 as pb;
use pb::item_service_client::ItemServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CallError;
use crate::domain::ItemGrant;

/// Business type of every item event the market causes.
const BUSINESS_TYPE: &str = "MARKET_TRADE";

/// The items service, as the market.
#[derive(Debug, Clone)]
pub struct Items(ItemServiceClient<InterceptedService<Channel, Signer>>);

/// What the market needs to know about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFacts {
    /// Current owner.
    pub owner_user_id: i64,
    /// Template code.
    pub template_code: String,
    /// The holder of its lock (`''` when not locked).
    pub lock_holder: String,
}

fn refused(status: tonic::Status) -> CallError {
    CallError::from_status("items", &status)
}

impl Items {
    /// Over `channel`, signing with `signer`.
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self(ItemServiceClient::with_interceptor(channel, signer))
    }

    /// The item's owner, template and lock holder.
    pub async fn get(&self, item_id: &str) -> Result<ItemFacts, CallError> {
        let request = pb::GetItemRequest { item_instance_id: item_id.to_owned() };
        let item = self.0.clone().get_item(request).await.map_err(refused)?.into_inner().item;
        let item = item.ok_or(CallError::Unavailable("items"))?;
        Ok(ItemFacts {
            owner_user_id: item.owner_user_id,
            template_code: item.template_code,
            lock_holder: item.lock_holder,
        })
    }

    /// Locks the item for `holder` if `owner` still owns it.
    pub async fn lock(&self, key: &str, item_id: &str, holder: &str, owner: i64) -> Result<(), CallError> {
        let request = pb::LockItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            lock_expires_at: None,
            expected_owner_user_id: owner,
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.0.clone().lock_item(request).await.map_err(refused)?;
        Ok(())
    }

    /// Releases `holder`'s lock.
    pub async fn unlock(&self, key: &str, item_id: &str, holder: &str) -> Result<(), CallError> {
        let request = pb::UnlockItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.0.clone().unlock_item(request).await.map_err(refused)?;
        Ok(())
    }

    /// Gives the item `holder` locked to `buyer`.
    pub async fn transfer(&self, key: &str, item_id: &str, holder: &str, buyer: i64) -> Result<(), CallError> {
        let request = pb::TransferItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            to_owner_user_id: buyer,
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.0.clone().transfer_item(request).await.map_err(refused)?;
        Ok(())
    }

    /// Grants `grant` to `user_id` with `business_type` and `correlation_id`; returns the
    /// new instance's id.
    pub async fn grant(
        &self,
        key: &str,
        user_id: i64,
        grant: &ItemGrant,
        business_type: &str,
        correlation_id: &str,
    ) -> Result<String, CallError> {
        let request = pb::GrantItemRequest {
            idempotency_key: key.to_owned(),
            owner_user_id: user_id,
            template_code: grant.template_code.clone(),
            expires_at: grant.expires_at.map(economy_kit::time::to_timestamp),
            metadata: grant.metadata.clone().into_iter().collect(),
            business_type: business_type.to_owned(),
            reason: String::new(),
            correlation_id: correlation_id.to_owned(),
        };
        let item = self.0.clone().grant_item(request).await.map_err(refused)?.into_inner().item;
        Ok(item.ok_or(CallError::Unavailable("items"))?.id)
    }

    /// Revokes an item an undone exchange granted.
    pub async fn revoke(
        &self,
        key: &str,
        item_id: &str,
        business_type: &str,
        correlation_id: &str,
    ) -> Result<(), CallError> {
        let request = pb::RevokeItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            reason: "exchange undone".to_owned(),
            business_type: business_type.to_owned(),
            correlation_id: correlation_id.to_owned(),
        };
        self.0.clone().revoke_item(request).await.map_err(refused)?;
        Ok(())
    }

    /// Refused with the items service's TEMPLATE_NOT_FOUND when `template_code` is unknown.
    pub async fn check_template(&self, template_code: &str) -> Result<(), CallError> {
        let request = pb::GetTemplateRequest { code: template_code.to_owned() };
        self.0.clone().get_template(request).await.map_err(refused)?;
        Ok(())
    }
}
