//! Items calls: the escrow of listed items (lock / unlock by holder
//! `market:listing:<id>`) and their delivery to the buyer (transfer).

use economy_kit::identity::Signer;
use economy_proto::items::v1 as pb;
use pb::item_service_client::ItemServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CallError;

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
}
