//! The one mapping from `ItemError` to `tonic::Status` (docs/errors.md): gRPC code, stable
//! `ErrorInfo.reason`, and metadata naming the entities involved.

use economy_kit::error::{VALIDATION_FAILED, invalid_field, status, storage};
use economy_kit::reasons;
use tonic::{Code, Status};

use super::DOMAIN;
use crate::domain::ItemError;

impl From<ItemError> for Status {
    fn from(error: ItemError) -> Self {
        let message = error.to_string();
        let precondition = Code::FailedPrecondition;
        let (code, reason, metadata): (Code, &str, Vec<(&str, String)>) = match error {
            ItemError::TemplateNotFound(code) => {
                (Code::NotFound, reasons::TEMPLATE_NOT_FOUND, vec![("template_code", code)])
            }
            ItemError::ItemNotFound(id) => (Code::NotFound, reasons::ITEM_NOT_FOUND, vec![("item_instance_id", id)]),
            ItemError::NotAvailable { item_id, status } => (
                precondition,
                reasons::ITEM_NOT_AVAILABLE,
                vec![("item_instance_id", item_id), ("status", status.as_str().to_owned())],
            ),
            ItemError::LockedByOther(id) => {
                (precondition, reasons::ITEM_LOCKED_BY_OTHER, vec![("item_instance_id", id)])
            }
            ItemError::NotLocked { item_id, status } => (
                precondition,
                reasons::ITEM_NOT_LOCKED,
                vec![("item_instance_id", item_id), ("status", status.as_str().to_owned())],
            ),
            ItemError::NotConsumable { item_id, template } => (
                precondition,
                reasons::ITEM_NOT_CONSUMABLE,
                vec![("item_instance_id", item_id), ("template_code", template)],
            ),
            ItemError::Expired(id) => (precondition, reasons::ITEM_EXPIRED, vec![("item_instance_id", id)]),
            ItemError::LockExpired(id) => (precondition, reasons::ITEM_LOCK_EXPIRED, vec![("item_instance_id", id)]),
            ItemError::OwnerMismatch(id) => {
                (precondition, reasons::ITEM_OWNER_MISMATCH, vec![("item_instance_id", id)])
            }
            ItemError::SameOwner(id) => (precondition, reasons::ITEM_SAME_OWNER, vec![("item_instance_id", id)]),
            ItemError::NotDue(id) => (precondition, reasons::ITEM_NOT_DUE, vec![("item_instance_id", id)]),
            ItemError::NotInFuture { field } => {
                return invalid_field(DOMAIN, VALIDATION_FAILED, field, "must be in the future");
            }
            ItemError::IdempotencyKeyReused(key) => {
                (Code::AlreadyExists, reasons::IDEMPOTENCY_KEY_REUSED, vec![("idempotency_key", key)])
            }
            ItemError::PermissionDenied(_) => (Code::PermissionDenied, reasons::PERMISSION_DENIED, vec![]),
            ItemError::Contended(id) => (Code::Aborted, reasons::ITEM_CONTENDED, vec![("item_instance_id", id)]),
            ItemError::Storage(cause) => return storage(DOMAIN, &cause, &message),
        };
        status(code, DOMAIN, reason, message, metadata)
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::error::{reason, violated_fields};

    use super::*;
    use crate::domain::item::ItemStatus;

    #[test]
    fn storage_errors_are_opaque() {
        let status = Status::from(ItemError::Storage("UNIQUE constraint failed: item_events".into()));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("item_events"));
    }

    #[test]
    fn reasons_are_stable() {
        let cases = [
            (ItemError::IdempotencyKeyReused("k".into()), Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED"),
            (
                ItemError::NotAvailable { item_id: "i".into(), status: ItemStatus::Used },
                Code::FailedPrecondition,
                "ITEM_NOT_AVAILABLE",
            ),
            (ItemError::LockedByOther("i".into()), Code::FailedPrecondition, "ITEM_LOCKED_BY_OTHER"),
            (ItemError::Contended("i".into()), Code::Aborted, "ITEM_CONTENDED"),
            (ItemError::TemplateNotFound("t".into()), Code::NotFound, "TEMPLATE_NOT_FOUND"),
        ];
        for (error, code, expected) in cases {
            let status = Status::from(error);
            assert_eq!((status.code(), reason(&status).as_deref()), (code, Some(expected)));
        }
    }

    #[test]
    fn past_instants_name_their_field() {
        let status = Status::from(ItemError::NotInFuture { field: "lock_expires_at" });
        assert_eq!((status.code(), reason(&status).as_deref()), (Code::InvalidArgument, Some(VALIDATION_FAILED)));
        assert_eq!(violated_fields(&status), ["lock_expires_at"]);
    }
}
