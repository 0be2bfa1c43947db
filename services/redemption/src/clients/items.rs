//! Items calls: the lock of an order's item (holder `redemption:order:<id>`), its unlock
//! when the order ends unfulfilled, and its consumption when the code is redeemed.

use economy_kit::identity::Signer;
use economy_proto::items::v1 as pb;
use pb::item_service_client::ItemServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::CallError;

/// Business type recorded on the item events redemption causes.
const BUSINESS_TYPE: &str = "REDEMPTION";

/// The items service, as redemption.
#[derive(Debug, Clone)]
pub struct Items(ItemServiceClient<InterceptedService<Channel, Signer>>);

/// What redemption needs to know about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFacts {
    /// Current owner.
    pub owner_user_id: i64,
    /// Whether its template is redeemable.
    pub redeemable: bool,
}

fn refused(status: tonic::Status) -> CallError {
    CallError::from_status("items", &status)
}

impl Items {
    /// Over `channel` (`clients::channel`), signing with `signer`.
    pub fn new(channel: Channel, signer: Signer) -> Self {
        Self(ItemServiceClient::with_interceptor(channel, signer))
    }

    /// The item's owner and whether it is redeemable.
    pub async fn get(&self, item_id: &str) -> Result<ItemFacts, CallError> {
        let request = pb::GetItemRequest { item_instance_id: item_id.to_owned() };
        let response = self.0.clone().get_item(request).await.map_err(refused)?.into_inner();
        let owner_user_id = response.item.map(|item| item.owner_user_id).ok_or(CallError::Unavailable("items"))?;
        Ok(ItemFacts { owner_user_id, redeemable: response.template.is_some_and(|template| template.redeemable) })
    }

    /// Locks the item for `holder` if `owner` still owns it.
    pub async fn lock(&self, item_id: &str, holder: &str, owner: i64, key: &str) -> Result<(), CallError> {
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
    pub async fn unlock(&self, item_id: &str, holder: &str, key: &str) -> Result<(), CallError> {
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

    /// Consumes the item `holder` has locked.
    pub async fn consume(&self, item_id: &str, holder: &str, key: &str) -> Result<(), CallError> {
        let request = pb::ConsumeItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.0.clone().consume_item(request).await.map_err(refused)?;
        Ok(())
    }
}
