//! The one mapping from `MarketError` to `tonic::Status` (docs/errors.md).

use economy_kit::error::{VALIDATION_FAILED, invalid_field, status, storage};
use economy_kit::reasons;
use tonic::{Code, Status};

use super::DOMAIN;
use crate::domain::MarketError;

impl From<MarketError> for Status {
    fn from(error: MarketError) -> Self {
        let message = error.to_string();
        let (code, reason, metadata): (Code, String, Vec<(&str, String)>) = match error {
            MarketError::ListingNotFound(id) => {
                (Code::NotFound, reasons::LISTING_NOT_FOUND.into(), vec![("listing_id", id)])
            }
            MarketError::ListingNotOnSale { listing_id, status } => (
                Code::FailedPrecondition,
                reasons::LISTING_NOT_ON_SALE.into(),
                vec![("listing_id", listing_id), ("status", status.to_owned())],
            ),
            MarketError::ListingExpired(id) => {
                (Code::FailedPrecondition, reasons::LISTING_EXPIRED.into(), vec![("listing_id", id)])
            }
            MarketError::ListingFailed(id) => {
                (Code::FailedPrecondition, reasons::LISTING_FAILED.into(), vec![("listing_id", id)])
            }
            MarketError::Invalid { field, description } => {
                return invalid_field(DOMAIN, VALIDATION_FAILED, field, description);
            }
            MarketError::OwnListing(id) => {
                (Code::FailedPrecondition, reasons::OWN_LISTING.into(), vec![("listing_id", id)])
            }
            MarketError::ItemAlreadyListed(id) => {
                (Code::FailedPrecondition, reasons::LISTING_ALREADY_OPEN.into(), vec![("item_instance_id", id)])
            }
            MarketError::PriceAssetNotAllowed(asset) => {
                (Code::InvalidArgument, reasons::PRICE_ASSET_NOT_ALLOWED.into(), vec![("asset_code", asset)])
            }
            MarketError::ItemNotOwned(id) => {
                (Code::FailedPrecondition, reasons::ITEM_NOT_OWNED.into(), vec![("item_instance_id", id)])
            }
            MarketError::Refused { code, domain, reason, message } => {
                return status(Code::from_i32(code), &domain, &reason, message, Vec::<(String, String)>::new());
            }
            MarketError::TradeFailed { trade_id, reason } => {
                (Code::FailedPrecondition, reason.clone(), vec![("trade_id", trade_id), ("reason", reason)])
            }
            MarketError::OfferNotFound(id) => (Code::NotFound, reasons::OFFER_NOT_FOUND.into(), vec![("offer_id", id)]),
            MarketError::OfferNotActive(id) => {
                (Code::FailedPrecondition, reasons::OFFER_NOT_ACTIVE.into(), vec![("offer_id", id)])
            }
            MarketError::OfferSoldOut { offer_id, remaining } => {
                let mut metadata = vec![("offer_id", offer_id)];
                metadata.extend(remaining.map(|remaining| ("remaining", remaining.to_string())));
                (Code::FailedPrecondition, reasons::OFFER_SOLD_OUT.into(), metadata)
            }
            MarketError::PurchaseLimitReached { offer_id, limit } => (
                Code::FailedPrecondition,
                reasons::PURCHASE_LIMIT_REACHED.into(),
                vec![("offer_id", offer_id), ("limit", limit.to_owned())],
            ),
            MarketError::ExchangeInProgress(id) => {
                (Code::Aborted, reasons::EXCHANGE_IN_PROGRESS.into(), vec![("exchange_id", id)])
            }
            MarketError::AssetNotFound(code) => {
                (Code::NotFound, reasons::ASSET_NOT_FOUND.into(), vec![("asset_code", code)])
            }
            MarketError::ExchangeNotFound(id) => {
                (Code::NotFound, reasons::EXCHANGE_NOT_FOUND.into(), vec![("exchange_id", id)])
            }
            MarketError::ExchangeFailed { exchange_id, reason, asset_code } => {
                let mut metadata = vec![("exchange_id", exchange_id), ("reason", reason.clone())];
                if !asset_code.is_empty() {
                    metadata.push(("asset_code", asset_code));
                }
                (Code::FailedPrecondition, reason, metadata)
            }
            MarketError::Unavailable(service) => {
                (Code::Unavailable, reasons::UPSTREAM_UNAVAILABLE.into(), vec![("upstream", service.to_owned())])
            }
            MarketError::PermissionDenied(_) => (Code::PermissionDenied, reasons::PERMISSION_DENIED.into(), vec![]),
            MarketError::IdempotencyKeyReused(key) => {
                (Code::AlreadyExists, reasons::IDEMPOTENCY_KEY_REUSED.into(), vec![("idempotency_key", key)])
            }
            MarketError::OutboxNotFound(id) => {
                (Code::NotFound, reasons::OUTBOX_NOT_FOUND.into(), vec![("outbox_id", id)])
            }
            MarketError::OutboxAlreadyDelivered(id) => {
                (Code::FailedPrecondition, reasons::OUTBOX_ALREADY_DELIVERED.into(), vec![("outbox_id", id)])
            }
            MarketError::Storage(cause) => return storage(DOMAIN, &cause, &message),
        };
        status(code, DOMAIN, &reason, message, metadata)
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::error::reason;

    use super::*;

    #[test]
    fn a_failed_trade_carries_the_refusal_reason() {
        let status =
            Status::from(MarketError::TradeFailed { trade_id: "t".into(), reason: "INSUFFICIENT_BALANCE".into() });
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(&status).as_deref(), Some("INSUFFICIENT_BALANCE"));
    }

    #[test]
    fn clock_rules_are_validation_failures_naming_their_field() {
        let status = Status::from(MarketError::Invalid { field: "expires_at", description: "in the future" });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(reason(&status).as_deref(), Some("VALIDATION_FAILED"));
        assert_eq!(economy_kit::error::violated_fields(&status), ["expires_at"]);
        let expired = Status::from(MarketError::ListingExpired("l".into()));
        assert_eq!((expired.code(), reason(&expired).as_deref()), (Code::FailedPrecondition, Some("LISTING_EXPIRED")));
    }

    #[test]
    fn storage_errors_are_opaque() {
        let status = Status::from(MarketError::Storage("UNIQUE constraint failed: trades".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("trades"));
    }
}
