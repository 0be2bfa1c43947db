//! The Items calls redemption makes (DESIGN.md §5), signed with the service identity
//! `redemption`, each with a deterministic idempotency key so retries are safe. Items'
//! answers are sorted into business refusals (final) and unavailability (retry).

use std::time::Duration;

use economy_kit::identity::{Caller, IdentityKey, Signer};
use economy_proto::items::v1 as pb;
use pb::item_service_client::ItemServiceClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// Business type recorded on the item events redemption causes.
const BUSINESS_TYPE: &str = "REDEMPTION";

/// Why an Items call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemsError {
    /// A business answer (not found, not available, locked by another holder, …).
    Refused {
        /// gRPC code.
        code: i32,
        /// `ErrorInfo.reason`.
        reason: String,
        /// Message.
        message: String,
    },
    /// No answer, or a transient one: retry later with the same key.
    Unavailable,
}

impl From<Status> for ItemsError {
    fn from(status: Status) -> Self {
        match status.code() {
            Code::InvalidArgument
            | Code::NotFound
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::OutOfRange => Self::Refused {
                code: status.code() as i32,
                reason: economy_kit::error::reason(&status).unwrap_or_default(),
                message: status.message().to_owned(),
            },
            _ => Self::Unavailable,
        }
    }
}

/// What redemption needs to know about an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFacts {
    /// Current owner.
    pub owner_user_id: i64,
    /// Whether its template is redeemable.
    pub redeemable: bool,
}

/// A lazily connected Items client.
#[derive(Debug, Clone)]
pub struct ItemsClient {
    client: ItemServiceClient<InterceptedService<Channel, Signer>>,
}

impl ItemsClient {
    /// A client of the Items service at `url` (connected on first use), calling with
    /// `timeout` per request.
    pub fn new(url: &str, identity: &IdentityKey, timeout: Duration) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .connect_lazy();
        let signer = identity.signer(Caller::service("redemption"));
        Ok(Self { client: ItemServiceClient::with_interceptor(channel, signer) })
    }

    /// The item's owner and whether it is redeemable.
    pub async fn get(&self, item_id: &str) -> Result<ItemFacts, ItemsError> {
        let request = pb::GetItemRequest { item_instance_id: item_id.to_owned() };
        let response = self.client.clone().get_item(request).await?.into_inner();
        let owner_user_id = response.item.map(|item| item.owner_user_id).ok_or(ItemsError::Unavailable)?;
        Ok(ItemFacts { owner_user_id, redeemable: response.template.is_some_and(|template| template.redeemable) })
    }

    /// Locks the item for `holder` if `owner` still owns it.
    pub async fn lock(&self, item_id: &str, holder: &str, owner: i64, key: &str) -> Result<(), ItemsError> {
        let request = pb::LockItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            lock_expires_at: None,
            expected_owner_user_id: owner,
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.client.clone().lock_item(request).await?;
        Ok(())
    }

    /// Releases `holder`'s lock.
    pub async fn unlock(&self, item_id: &str, holder: &str, key: &str) -> Result<(), ItemsError> {
        let request = pb::UnlockItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.client.clone().unlock_item(request).await?;
        Ok(())
    }

    /// Consumes the item `holder` has locked.
    pub async fn consume(&self, item_id: &str, holder: &str, key: &str) -> Result<(), ItemsError> {
        let request = pb::ConsumeItemRequest {
            idempotency_key: key.to_owned(),
            item_instance_id: item_id.to_owned(),
            holder: holder.to_owned(),
            business_type: BUSINESS_TYPE.to_owned(),
            reason: String::new(),
        };
        self.client.clone().consume_item(request).await?;
        Ok(())
    }
}
