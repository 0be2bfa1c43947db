//! The one mapping from `RedemptionError` to `tonic::Status` (docs/errors.md). The BFF maps
//! `CODE_ALREADY_USED` and `CODE_CANCELLED` to HTTP 409 and `CODE_EXPIRED` to HTTP 410.

use economy_kit::error::{status, storage};
use economy_kit::reasons;
use tonic::{Code, Status};

use super::DOMAIN;
use crate::domain::RedemptionError;

impl From<RedemptionError> for Status {
    fn from(error: RedemptionError) -> Self {
        let message = error.to_string();
        let (code, reason, metadata): (Code, &str, Vec<(&str, String)>) = match error {
            RedemptionError::CodeInvalidFormat => (Code::InvalidArgument, reasons::CODE_INVALID_FORMAT, vec![]),
            RedemptionError::CodeNotFound => (Code::NotFound, reasons::CODE_NOT_FOUND, vec![]),
            RedemptionError::CodeAlreadyUsed(order) => {
                (Code::FailedPrecondition, reasons::CODE_ALREADY_USED, vec![("order_id", order)])
            }
            RedemptionError::CodeExpired(order) => {
                (Code::FailedPrecondition, reasons::CODE_EXPIRED, vec![("order_id", order)])
            }
            RedemptionError::CodeCancelled(order) => {
                (Code::FailedPrecondition, reasons::CODE_CANCELLED, vec![("order_id", order)])
            }
            RedemptionError::OrderNotFound(order) => {
                (Code::NotFound, reasons::ORDER_NOT_FOUND, vec![("order_id", order)])
            }
            RedemptionError::OrderNotPending { order_id, status } => (
                Code::FailedPrecondition,
                reasons::ORDER_NOT_PENDING,
                vec![("order_id", order_id), ("status", status.to_owned())],
            ),
            RedemptionError::OrderFailed(order) => {
                (Code::FailedPrecondition, reasons::ORDER_FAILED, vec![("order_id", order)])
            }
            RedemptionError::OrderAlreadyOpen(item) => {
                (Code::FailedPrecondition, reasons::ORDER_ALREADY_OPEN, vec![("item_instance_id", item)])
            }
            RedemptionError::ItemNotRedeemable(item) => {
                (Code::FailedPrecondition, reasons::ITEM_NOT_REDEEMABLE, vec![("item_instance_id", item)])
            }
            RedemptionError::ItemRefused { code, reason, message } => {
                return status(Code::from_i32(code), "economy.items", &reason, message, Vec::<(String, String)>::new());
            }
            RedemptionError::ItemsUnavailable => (Code::Unavailable, reasons::ITEMS_UNAVAILABLE, vec![]),
            RedemptionError::PermissionDenied(_) => (Code::PermissionDenied, reasons::PERMISSION_DENIED, vec![]),
            RedemptionError::IdempotencyKeyReused(key) => {
                (Code::AlreadyExists, reasons::IDEMPOTENCY_KEY_REUSED, vec![("idempotency_key", key)])
            }
            RedemptionError::OutboxNotFound(id) => (Code::NotFound, reasons::OUTBOX_NOT_FOUND, vec![("outbox_id", id)]),
            RedemptionError::OutboxAlreadyDelivered(id) => {
                (Code::FailedPrecondition, reasons::OUTBOX_ALREADY_DELIVERED, vec![("outbox_id", id)])
            }
            RedemptionError::FulfillRateLimited { retry_after_secs } => (
                Code::ResourceExhausted,
                reasons::FULFILL_RATE_LIMITED,
                vec![("retry_after_secs", retry_after_secs.to_string())],
            ),
            RedemptionError::Storage(cause) => return storage(DOMAIN, &cause, &message),
        };
        status(code, DOMAIN, reason, message, metadata)
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::error::reason;

    use super::*;

    #[test]
    fn storage_errors_are_opaque() {
        let status = Status::from(RedemptionError::Storage("UNIQUE constraint failed: code_hash".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("code_hash"));
    }

    #[test]
    fn code_reasons_have_their_http_friendly_codes() {
        for (error, code, expected) in [
            (RedemptionError::CodeInvalidFormat, Code::InvalidArgument, "CODE_INVALID_FORMAT"),
            (RedemptionError::CodeNotFound, Code::NotFound, "CODE_NOT_FOUND"),
            (RedemptionError::CodeAlreadyUsed("o".into()), Code::FailedPrecondition, "CODE_ALREADY_USED"),
            (RedemptionError::CodeExpired("o".into()), Code::FailedPrecondition, "CODE_EXPIRED"),
            (RedemptionError::CodeCancelled("o".into()), Code::FailedPrecondition, "CODE_CANCELLED"),
        ] {
            let status = Status::from(error);
            assert_eq!((status.code(), reason(&status).as_deref()), (code, Some(expected)));
        }
    }
}
