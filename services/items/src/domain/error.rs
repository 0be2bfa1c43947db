//! Every way an item operation can fail (docs/errors.md): one enum, mapped to
//! `tonic::Status` in exactly one place (`grpc::error`).

use super::item::ItemStatus;

/// An items failure. Each variant maps to one stable `ErrorInfo.reason`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ItemError {
    /// `TEMPLATE_NOT_FOUND` (NOT_FOUND): no template with this code.
    #[error("template {0} is not defined")]
    TemplateNotFound(String),
    /// `ITEM_NOT_FOUND` (NOT_FOUND): no instance with this id.
    #[error("item {0} does not exist")]
    ItemNotFound(String),
    /// `ITEM_NOT_AVAILABLE` (FAILED_PRECONDITION): the operation needs an available
    /// instance (lock, revoke, consume by the owner).
    #[error("item {item_id} is {status}, not available")]
    NotAvailable {
        /// The instance.
        item_id: String,
        /// Its status.
        status: ItemStatus,
    },
    /// `ITEM_LOCKED_BY_OTHER` (FAILED_PRECONDITION): locked by another holder.
    #[error("item {0} is locked by another holder")]
    LockedByOther(String),
    /// `ITEM_NOT_LOCKED` (FAILED_PRECONDITION): unlock, transfer or consume by a holder of
    /// an instance that is not locked.
    #[error("item {item_id} is {status}, not locked")]
    NotLocked {
        /// The instance.
        item_id: String,
        /// Its status.
        status: ItemStatus,
    },
    /// `ITEM_NOT_CONSUMABLE` (FAILED_PRECONDITION): the owner may not consume instances
    /// of this template directly.
    #[error("item {item_id} of template {template} is not consumable by its owner")]
    NotConsumable {
        /// The instance.
        item_id: String,
        /// Its template.
        template: String,
    },
    /// `ITEM_EXPIRED` (FAILED_PRECONDITION): past its expiry (even before the job ran).
    #[error("item {0} has expired")]
    Expired(String),
    /// `ITEM_LOCK_EXPIRED` (FAILED_PRECONDITION): the holder's lock is past its
    /// `lock_expires_at` (even before the lock-expiry job released it), so the holder may
    /// no longer transfer or consume the instance; it may still unlock it.
    #[error("the lock on item {0} has expired")]
    LockExpired(String),
    /// `ITEM_OWNER_MISMATCH` (FAILED_PRECONDITION): not owned by the expected user.
    #[error("item {0} is not owned by the expected user")]
    OwnerMismatch(String),
    /// `ITEM_SAME_OWNER` (FAILED_PRECONDITION): a transfer to the current owner.
    #[error("item {0} already belongs to the target user")]
    SameOwner(String),
    /// `ITEM_NOT_DUE` (FAILED_PRECONDITION): a job found the expiry not reached (a
    /// concurrent change); jobs skip it.
    #[error("item {0} is not due")]
    NotDue(String),
    /// `VALIDATION_FAILED` (INVALID_ARGUMENT) on `field`: an instant that must be in the
    /// future is not (checked at write time, after a replay lookup).
    #[error("{field} must be in the future")]
    NotInFuture {
        /// The request field.
        field: &'static str,
    },
    /// `IDEMPOTENCY_KEY_REUSED` (ALREADY_EXISTS): the key was used on this instance (or
    /// for a grant) with different content.
    #[error("idempotency key {0} was already used for a different request")]
    IdempotencyKeyReused(String),
    /// `PERMISSION_DENIED`: the caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// `ITEM_CONTENDED` (ABORTED): the instance kept changing under concurrent writers;
    /// safe to retry.
    #[error("item {0} is contended")]
    Contended(String),
    /// An unexpected storage failure; reported as an opaque INTERNAL.
    #[error("storage: {0}")]
    Storage(#[source] economy_kit::error::StorageCause),
}
