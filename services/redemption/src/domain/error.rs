//! Every way a redemption operation can fail (docs/redemption.md, docs/errors.md): one enum,
//! mapped to `tonic::Status` in exactly one place (`grpc::error`).

/// A redemption failure. Each variant maps to one stable `ErrorInfo.reason`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RedemptionError {
    /// `CODE_INVALID_FORMAT` (INVALID_ARGUMENT): not 12 symbols of the alphabet.
    #[error("a code is 12 symbols from 23456789ABCDEFGHJKMNPQRSTUVWXYZ, e.g. ABCD-EFGH-JK23")]
    CodeInvalidFormat,
    /// `CODE_NOT_FOUND` (NOT_FOUND): no live order has this code.
    #[error("no order has this code")]
    CodeNotFound,
    /// `CODE_ALREADY_USED` (FAILED_PRECONDITION; BFF: HTTP 409).
    #[error("this code was already redeemed")]
    CodeAlreadyUsed(String),
    /// `CODE_EXPIRED` (FAILED_PRECONDITION; BFF: HTTP 410).
    #[error("this code has expired")]
    CodeExpired(String),
    /// `CODE_CANCELLED` (FAILED_PRECONDITION; BFF: HTTP 409).
    #[error("this code was cancelled")]
    CodeCancelled(String),
    /// `ORDER_NOT_FOUND` (NOT_FOUND).
    #[error("order {0} does not exist")]
    OrderNotFound(String),
    /// `ORDER_NOT_PENDING` (FAILED_PRECONDITION): cancel or reissue of a resolved order.
    #[error("order {order_id} is {status}, not pending")]
    OrderNotPending {
        /// The order.
        order_id: String,
        /// Its status.
        status: &'static str,
    },
    /// `ORDER_FAILED` (FAILED_PRECONDITION): a retried creation whose order failed (its
    /// item could not be locked, or the creation was abandoned and timed out); a new
    /// order needs a new key.
    #[error("order {0} failed: its item could not be locked; create a new order with a new key")]
    OrderFailed(String),
    /// `ORDER_ALREADY_OPEN` (FAILED_PRECONDITION): the item already has a pending order.
    #[error("item {0} already has an open redemption order")]
    OrderAlreadyOpen(String),
    /// `ITEM_NOT_REDEEMABLE` (FAILED_PRECONDITION): its template is not redeemable.
    #[error("item {0} is not redeemable")]
    ItemNotRedeemable(String),
    /// The Items service refused a call with a business answer (its code, reason and
    /// message are passed through, e.g. `ITEM_NOT_AVAILABLE`, `ITEM_NOT_FOUND`).
    #[error("{message}")]
    ItemRefused {
        /// gRPC code returned by Items.
        code: i32,
        /// Its `ErrorInfo.reason`.
        reason: String,
        /// Its message.
        message: String,
    },
    /// `ITEMS_UNAVAILABLE` (UNAVAILABLE): Items did not answer; retry with the same key.
    #[error("the items service is unavailable; retry with the same idempotency key")]
    ItemsUnavailable,
    /// `PERMISSION_DENIED`.
    #[error("{0}")]
    PermissionDenied(String),
    /// `IDEMPOTENCY_KEY_REUSED` (ALREADY_EXISTS): the key was used for another request.
    #[error("idempotency key {0} was used for a different request")]
    IdempotencyKeyReused(String),
    /// `OUTBOX_NOT_FOUND` (NOT_FOUND): no such outbox row (or none for the order).
    #[error("outbox row {0} does not exist")]
    OutboxNotFound(String),
    /// `OUTBOX_ALREADY_DELIVERED` (FAILED_PRECONDITION): a delivered row is not re-driven.
    #[error("outbox row {0} was already delivered")]
    OutboxAlreadyDelivered(String),
    /// `FULFILL_RATE_LIMITED` (RESOURCE_EXHAUSTED): too many failed fulfils by this caller.
    #[error("too many failed redemption attempts; retry in {retry_after_secs} s")]
    FulfillRateLimited {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// Storage failure (INTERNAL, opaque).
    #[error("storage error: {0}")]
    Storage(#[source] economy_kit::error::StorageCause),
}
