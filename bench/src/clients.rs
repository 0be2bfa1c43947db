//! Real tonic clients as a BFF or another service would use them: through the gateway with
//! `authorization: Bearer <JWT>` (and `idempotency-key` on writes), or straight to a service
//! with the signed internal identity. Many clients share a few HTTP/2 connections
//! ([`connect_many`]); a tonic `Channel` is one connection multiplexing every call.

use economy_kit::identity::Signer;
use economy_proto::gateway::v1::backpack_service_client::BackpackServiceClient;
use economy_proto::items::v1::item_service_client::ItemServiceClient;
use economy_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use economy_proto::market::v1::market_service_client::MarketServiceClient;
use economy_proto::redemption::v1::redemption_service_client::RedemptionServiceClient;
use economy_proto::{items::v1 as items, ledger::v1 as ledger, market::v1 as market, redemption::v1 as redemption};
use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

/// Metadata key of the gateway's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Metadata the gateway sets on a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";

/// How a client authenticates every call.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `authorization: <value>` (`Bearer <JWT>`), for the gateway.
    Bearer(AsciiMetadataValue),
    /// The signed internal identity, for a service called directly.
    Internal(Signer),
}

impl Interceptor for Auth {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self {
            Self::Bearer(value) => {
                request.metadata_mut().insert("authorization", value.clone());
                Ok(request)
            }
            Self::Internal(signer) => signer.call(request),
        }
    }
}

/// An authenticated channel.
pub type Authed = InterceptedService<Channel, Auth>;
/// `economy.ledger.v1.LedgerService` client.
pub type LedgerClient = LedgerServiceClient<Authed>;
/// `economy.items.v1.ItemService` client.
pub type ItemsClient = ItemServiceClient<Authed>;
/// `economy.redemption.v1.RedemptionService` client.
pub type RedemptionClient = RedemptionServiceClient<Authed>;

/// `economy.market.v1.MarketService` client.
pub type MarketClient = MarketServiceClient<Authed>;

/// `economy.gateway.v1.BackpackService` client (the gateway's own service).
pub type BackpackClient = BackpackServiceClient<Authed>;

/// A backpack client on `channel` (the gateway's).
pub fn backpack(channel: Channel, auth: Auth) -> BackpackClient {
    BackpackServiceClient::with_interceptor(channel, auth)
}

/// A ledger client on `channel`.
pub fn ledger(channel: Channel, auth: Auth) -> LedgerClient {
    LedgerServiceClient::with_interceptor(channel, auth)
}

/// An items client on `channel`.
pub fn items(channel: Channel, auth: Auth) -> ItemsClient {
    ItemServiceClient::with_interceptor(channel, auth)
}

/// A redemption client on `channel`.
pub fn redemption(channel: Channel, auth: Auth) -> RedemptionClient {
    RedemptionServiceClient::with_interceptor(channel, auth)
}

/// A market client on `channel`.
pub fn market(channel: Channel, auth: Auth) -> MarketClient {
    MarketServiceClient::with_interceptor(channel, auth)
}

/// `url` with an `http://` scheme when it has none (`127.0.0.1:50051` is accepted).
pub fn with_scheme(url: &str) -> String {
    if url.contains("://") { url.to_owned() } else { format!("http://{url}") }
}

/// One HTTP/2 connection to `url`, established now.
pub async fn connect(url: &str) -> anyhow::Result<Channel> {
    let url = with_scheme(url);
    Channel::from_shared(url.clone())?
        .connect()
        .await
        .map_err(|error| anyhow::anyhow!("cannot connect to {url}: {error}"))
}

/// `count` (at least one) separate HTTP/2 connections to `url`; client `i` of a load
/// uses connection `i % count`.
pub async fn connect_many(url: &str, count: usize) -> anyhow::Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(count.max(1));
    for _ in 0..count.max(1) {
        channels.push(connect(url).await?);
    }
    Ok(channels)
}

/// A fresh idempotency key (UUIDv7).
pub fn new_key() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Where a write goes, which decides where its idempotency key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Through the gateway: metadata `idempotency-key`; the request's own
    /// `idempotency_key` stays empty and the service keys the write by the gateway's
    /// business event (docs/idempotency.md).
    Gateway,
    /// Straight to the service: the request's own `idempotency_key` field.
    Direct,
}

/// A write request with its own `idempotency_key` field.
pub trait Keyed {
    /// Sets the request's `idempotency_key`.
    fn set_idempotency_key(&mut self, key: String);
}

macro_rules! keyed {
    ($($message:ty),* $(,)?) => {
        $(impl Keyed for $message {
            fn set_idempotency_key(&mut self, key: String) {
                self.idempotency_key = key;
            }
        })*
    };
}

keyed!(
    ledger::AdjustBalanceRequest,
    ledger::PostTransactionRequest,
    items::GrantItemRequest,
    redemption::CreateOrderRequest,
    redemption::FulfillOrderRequest,
    market::CreateListingRequest,
    market::PurchaseListingRequest,
    market::PurchaseOfferRequest,
);

impl Route {
    /// `message` as a write keyed by `key` on this route.
    pub fn write<T: Keyed>(self, mut message: T, key: &str) -> anyhow::Result<Request<T>> {
        match self {
            Self::Gateway => {
                let mut request = Request::new(message);
                request.metadata_mut().insert(IDEMPOTENCY_KEY, key.parse()?);
                Ok(request)
            }
            Self::Direct => {
                message.set_idempotency_key(key.to_owned());
                Ok(Request::new(message))
            }
        }
    }

    /// `message`, a write without its own key field (e.g. `DefineAsset`), as a request on
    /// this route: keyed by `key` in metadata through the gateway, as is directly.
    pub fn unkeyed<T>(self, message: T, key: &str) -> anyhow::Result<Request<T>> {
        let mut request = Request::new(message);
        if self == Self::Gateway {
            request.metadata_mut().insert(IDEMPOTENCY_KEY, key.parse()?);
        }
        Ok(request)
    }
}

/// A failed call as the report counts it: `<CODE> <ErrorInfo.reason>` (e.g.
/// `FAILED_PRECONDITION INSUFFICIENT_BALANCE`), or `<CODE> (no reason)` for statuses
/// without `ErrorInfo` (transport errors, timeouts).
pub fn failure_reason(status: &Status) -> String {
    let code = code_name(status.code());
    match economy_kit::error::reason(status) {
        Some(reason) => format!("{code} {reason}"),
        None => format!("{code} (no reason)"),
    }
}

/// `FailedPrecondition` -> `FAILED_PRECONDITION`.
fn code_name(code: tonic::Code) -> String {
    let mut name = String::new();
    for (index, char) in format!("{code:?}").chars().enumerate() {
        if char.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(char.to_ascii_uppercase());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_upper_snake() {
        assert_eq!(code_name(tonic::Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(tonic::Code::Ok), "OK");
        assert_eq!(failure_reason(&Status::unavailable("x")), "UNAVAILABLE (no reason)");
    }

    #[test]
    fn routes_put_the_key_where_the_receiver_reads_it() -> anyhow::Result<()> {
        let through_gateway = Route::Gateway.write(ledger::AdjustBalanceRequest::default(), "k-1")?;
        assert_eq!(through_gateway.metadata().get(IDEMPOTENCY_KEY).map(|value| value.to_str().ok()), Some(Some("k-1")));
        assert!(through_gateway.get_ref().idempotency_key.is_empty());
        let direct = Route::Direct.write(ledger::AdjustBalanceRequest::default(), "k-2")?;
        assert_eq!(direct.get_ref().idempotency_key, "k-2");
        assert!(direct.metadata().get(IDEMPOTENCY_KEY).is_none());
        Ok(())
    }
}
