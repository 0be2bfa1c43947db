//! Every way a market operation can fail (docs/market.md, docs/errors.md): one enum, mapped to
//! `tonic::Status` in exactly one place (`grpc::error`).

/// A market failure. Each variant maps to one stable `ErrorInfo.reason`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MarketError {
    /// `LISTING_NOT_FOUND` (NOT_FOUND).
    #[error("listing {0} does not exist")]
    ListingNotFound(String),
    /// `LISTING_NOT_ON_SALE` (FAILED_PRECONDITION): sold, cancelled, expired, or being bought.
    #[error("listing {listing_id} is {status}, not on sale")]
    ListingNotOnSale {
        /// The listing.
        listing_id: String,
        /// Its status.
        status: &'static str,
    },
    /// `LISTING_EXPIRED` (FAILED_PRECONDITION): the listing reached its `expires_at`
    /// (whether or not the recovery worker has marked it `expired` yet).
    #[error("listing {0} has expired")]
    ListingExpired(String),
    /// `LISTING_FAILED` (FAILED_PRECONDITION): a retried creation whose listing failed
    /// (its escrow could not be taken); a new listing needs a new key.
    #[error("listing {0} failed (its escrow could not be taken); create a new listing with a new key")]
    ListingFailed(String),
    /// `VALIDATION_FAILED` (INVALID_ARGUMENT) for a rule checked against the clock on a
    /// first execution only (e.g. `expires_at` in the future), never on a retry.
    #[error("{field}: {description}")]
    Invalid {
        /// The request field, as a proto field path.
        field: &'static str,
        /// What it must be.
        description: &'static str,
    },
    /// `OWN_LISTING` (FAILED_PRECONDITION): a seller cannot buy their own listing.
    #[error("listing {0} is the caller's own")]
    OwnListing(String),
    /// `LISTING_ALREADY_OPEN` (FAILED_PRECONDITION): the item is already listed.
    #[error("item {0} is already listed")]
    ItemAlreadyListed(String),
    /// `PRICE_ASSET_NOT_ALLOWED` (INVALID_ARGUMENT).
    #[error("{0} is not a price asset of this market")]
    PriceAssetNotAllowed(String),
    /// `ITEM_NOT_OWNED` (FAILED_PRECONDITION): the seller does not own the item.
    #[error("item {0} is not the seller's")]
    ItemNotOwned(String),
    /// A business refusal by the ledger or the items service, passed through (e.g.
    /// `INSUFFICIENT_BALANCE`, `ITEM_NOT_AVAILABLE`).
    #[error("{message}")]
    Refused {
        /// gRPC code.
        code: i32,
        /// `ErrorInfo.domain` of the refusing service.
        domain: String,
        /// Its reason.
        reason: String,
        /// Its message.
        message: String,
    },
    /// FAILED_PRECONDITION with the refusal's reason (e.g. `INSUFFICIENT_BALANCE`): the
    /// purchase did not happen (nothing moved, or the buyer was refunded).
    #[error("trade {trade_id} did not complete: {reason}")]
    TradeFailed {
        /// The trade.
        trade_id: String,
        /// Why: the ledger's or items' reason.
        reason: String,
    },
    /// `OFFER_NOT_FOUND` (NOT_FOUND).
    #[error("offer {0} does not exist")]
    OfferNotFound(String),
    /// `OFFER_NOT_ACTIVE` (FAILED_PRECONDITION): disabled or outside its window.
    #[error("offer {0} is not on sale now")]
    OfferNotActive(String),
    /// `OFFER_SOLD_OUT` (FAILED_PRECONDITION): its stock left is below the quantity.
    #[error("offer {offer_id} has not enough stock left")]
    OfferSoldOut {
        /// The offer.
        offer_id: String,
        /// Units left (`None` when unknown at the refusal).
        remaining: Option<i64>,
    },
    /// `PURCHASE_LIMIT_REACHED` (FAILED_PRECONDITION): the user's cap of the offer.
    #[error("the purchase limit of offer {offer_id} is reached ({limit})")]
    PurchaseLimitReached {
        /// The offer.
        offer_id: String,
        /// Which cap: `total` or `window`.
        limit: &'static str,
    },
    /// `EXCHANGE_IN_PROGRESS` (ABORTED): another runner (a concurrent request with the
    /// key, or the recovery worker) is advancing the exchange; retry with the same key.
    #[error("exchange {0} is being advanced by another request or the recovery worker; retry with the same key")]
    ExchangeInProgress(String),
    /// `ASSET_NOT_FOUND` (NOT_FOUND): an offer's or bundle's asset is not in the ledger's
    /// catalog.
    #[error("asset {0} is not in the ledger's catalog")]
    AssetNotFound(String),
    /// `EXCHANGE_NOT_FOUND` (NOT_FOUND).
    #[error("exchange {0} does not exist")]
    ExchangeNotFound(String),
    /// FAILED_PRECONDITION with the refusal's reason (e.g. `INSUFFICIENT_BALANCE`): the
    /// exchange was undone (nothing charged, nothing kept).
    #[error("exchange {exchange_id} did not complete: {reason}")]
    ExchangeFailed {
        /// The exchange.
        exchange_id: String,
        /// Why: the ledger's or items' reason.
        reason: String,
        /// The price asset whose hold was refused (`''` when none).
        asset_code: String,
    },
    /// `UPSTREAM_UNAVAILABLE` (UNAVAILABLE): the ledger or items did not answer; the step
    /// is resumed by a retry with the same key or by the recovery worker.
    #[error("the {0} service is unavailable; retry with the same idempotency key")]
    Unavailable(&'static str),
    /// `PERMISSION_DENIED`.
    #[error("{0}")]
    PermissionDenied(String),
    /// `IDEMPOTENCY_KEY_REUSED` (ALREADY_EXISTS).
    #[error("idempotency key {0} was used for a different request")]
    IdempotencyKeyReused(String),
    /// `OUTBOX_NOT_FOUND` (NOT_FOUND): no such escrow return (or none for the listing).
    #[error("outbox row {0} does not exist")]
    OutboxNotFound(String),
    /// `OUTBOX_ALREADY_DELIVERED` (FAILED_PRECONDITION): a delivered row is not re-driven.
    #[error("outbox row {0} was already delivered")]
    OutboxAlreadyDelivered(String),
    /// Storage failure (INTERNAL, opaque).
    #[error("storage error: {0}")]
    Storage(#[source] economy_kit::error::StorageCause),
}
