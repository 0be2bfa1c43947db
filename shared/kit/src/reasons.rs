//! The error-reason catalogue: every `ErrorInfo.reason` the API can return, in one place.
//!
//! Each reason is a constant (`reasons::INSUFFICIENT_BALANCE`) and an [`Entry`] of
//! [`CATALOGUE`]: the gRPC code it comes with, the services and RPCs that return it, what a
//! client should do ([`Action`]) and the HTTP status a BFF should map it to
//! ([`http_status`], the one rule). Both are declared by one macro invocation below, so a
//! constant without an entry cannot exist. `docs/errors.md` is the same table for readers;
//! a unit test keeps it equal to [`markdown_table`].
//!
//! In debug builds (every test) the constructors of `economy_kit::error` panic on a reason
//! that is not catalogued, so a test that triggers one fails.
//!
//! A market purchase whose trade failed relays the refusal reason of the ledger or items
//! (e.g. `INSUFFICIENT_BALANCE`, `ITEM_NOT_AVAILABLE`) as `FAILED_PRECONDITION` in the
//! `economy.market` domain, with `trade_id` in the metadata, and a failed exchange
//! (PurchaseOffer, GrantBundle) likewise with `exchange_id` (and `asset_code` when a
//! price asset's hold was refused); other market and redemption
//! RPCs relay an upstream's refusal unchanged (code, domain and reason of the upstream).

use tonic::Code;

/// What a client should do about an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Transient: retry later (with the same idempotency key for a write), with backoff.
    Retry,
    /// The request is wrong: fix it; retrying it unchanged fails the same way.
    FixInput,
    /// A business outcome the user should see (not enough balance, code already used).
    ShowUser,
    /// A misconfiguration or a bug: retrying does not help; tell the operator.
    ContactOperator,
}

impl Action {
    /// The action as `docs/errors.md` writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::FixInput => "fix input",
            Self::ShowUser => "show to user",
            Self::ContactOperator => "contact operator",
        }
    }
}

/// One catalogued reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The stable `ErrorInfo.reason`, UPPER_SNAKE.
    pub reason: &'static str,
    /// The gRPC codes it comes with (one, except for reasons that carry another answer's
    /// code).
    pub codes: &'static [Code],
    /// The services (`ErrorInfo.domain` without `economy.`) and RPCs that return it.
    pub returned_by: &'static str,
    /// What a client should do.
    pub action: Action,
    /// What it means (the constant's doc comment).
    pub meaning: &'static str,
}

impl Entry {
    /// The HTTP status a BFF maps this reason to under each of its codes
    /// ([`http_status`]), in the order of `codes`.
    pub fn http_statuses(&self) -> Vec<u16> {
        self.codes.iter().map(|code| http_status(*code, self.reason)).collect()
    }
}

/// The HTTP status a BFF maps a gRPC error to: the mapping of `google/rpc/code.proto`,
/// with two rules of this API on top.
///
/// - `FAILED_PRECONDITION` is 409 Conflict (Google says 400): every such reason here is a
///   valid request refused by the current state of a resource (balance, hold, item, order),
///   so `INSUFFICIENT_BALANCE`, `CODE_ALREADY_USED`, `HOLD_ALREADY_RESOLVED` are 409.
/// - A `FAILED_PRECONDITION` reason that says something has expired (`…_EXPIRED`:
///   `CODE_EXPIRED`, `HOLD_EXPIRED`, `LISTING_EXPIRED`, …) is 410 Gone.
///
/// The rest: `INVALID_ARGUMENT` and `OUT_OF_RANGE` 400, `UNAUTHENTICATED` 401,
/// `PERMISSION_DENIED` 403, `NOT_FOUND` 404, `ALREADY_EXISTS` and `ABORTED` 409,
/// `RESOURCE_EXHAUSTED` 429, `CANCELLED` 499, `UNIMPLEMENTED` 501, `UNAVAILABLE` 503,
/// `DEADLINE_EXCEEDED` 504, anything else 500.
pub fn http_status(code: Code, reason: &str) -> u16 {
    match code {
        Code::Ok => 200,
        Code::InvalidArgument | Code::OutOfRange => 400,
        Code::Unauthenticated => 401,
        Code::PermissionDenied => 403,
        Code::NotFound => 404,
        Code::FailedPrecondition if reason.ends_with("_EXPIRED") => 410,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => 409,
        Code::ResourceExhausted => 429,
        Code::Cancelled => 499,
        Code::Unimplemented => 501,
        Code::Unavailable => 503,
        Code::DeadlineExceeded => 504,
        Code::Unknown | Code::Internal | Code::DataLoss => 500,
    }
}

/// Declares every reason once: a documented constant and its catalogue entry.
macro_rules! catalogue {
    ($( $(#[doc = $doc:literal])+ $name:ident: [$($code:ident),+], $action:ident, $by:literal; )+) => {
        $( $(#[doc = $doc])+ pub const $name: &str = stringify!($name); )+

        /// Every reason the API returns, in the order of `docs/errors.md`.
        pub const CATALOGUE: &[Entry] = &[$(
            Entry {
                reason: $name,
                codes: &[$(Code::$code),+],
                returned_by: $by,
                action: Action::$action,
                meaning: concat!($($doc),+),
            },
        )+];
    };
}

catalogue! {
    // ---- every service (shared/kit) ----
    /// A request field breaks a rule; the `BadRequest` detail names each field and what it
    /// must look like.
    VALIDATION_FAILED: [InvalidArgument], FixInput, "every service: any RPC with a request field";
    /// The request's bytes do not decode as its message. Names no field.
    MALFORMED_REQUEST: [InvalidArgument], FixInput, "every service: any RPC";
    /// An unexpected failure (storage, a broken invariant); logged, the message says nothing
    /// more.
    INTERNAL_ERROR: [Internal], ContactOperator, "every service: any RPC";
    /// The database aborted the write over a conflict with a concurrent one (a
    /// serialization failure or a deadlock) and it was still lost after the service's own
    /// retries; nothing of it was applied. Retry with the same idempotency key.
    STORAGE_CONFLICT: [Aborted], Retry, "ledger, items, market, redemption, gateway: any write";
    /// The service's database could not be reached or dropped the connection (a
    /// PostgreSQL failover, a restart); a write may or may not have been applied. Retry with
    /// the same idempotency key (deploy/FAILOVER.md).
    STORAGE_UNAVAILABLE: [Unavailable], Retry, "ledger, items, market, redemption, gateway: any RPC";
    /// The request's deadline (the caller's `grpc-timeout`, capped by the server's request
    /// timeout) passed before it finished; its work was stopped. Retry with a longer
    /// deadline (a write with the same idempotency key).
    DEADLINE_EXCEEDED: [DeadlineExceeded], Retry, "every service: any unary RPC";
    /// The caller may not do this (an admin tool, another user's resource, a service-only
    /// RPC).
    PERMISSION_DENIED: [PermissionDenied], FixInput, "ledger, items, market, redemption, gateway (GetBackpack): RPCs with an owner or role rule";
    /// The idempotency key was used before for a request with different content.
    IDEMPOTENCY_KEY_REUSED: [AlreadyExists], FixInput, "ledger, items, market, redemption: every write; gateway: ReleaseIdempotencyRecord";
    /// A service call without the signed internal identity (a client that bypassed the
    /// gateway).
    IDENTITY_MISSING: [Unauthenticated], ContactOperator, "ledger, items, market, redemption: every RPC";
    /// The signed internal identity is malformed or its signature does not verify (keys
    /// differ between services).
    IDENTITY_INVALID: [Unauthenticated], ContactOperator, "ledger, items, market, redemption: every RPC";
    /// The signed internal identity was issued outside the allowed clock skew (clocks
    /// disagree).
    IDENTITY_STALE: [Unauthenticated], ContactOperator, "ledger, items, market, redemption: every RPC";
    /// No outbox row with this id.
    OUTBOX_NOT_FOUND: [NotFound], FixInput, "market, redemption: RedriveOutbox";
    /// The outbox row was delivered already; nothing to re-drive.
    OUTBOX_ALREADY_DELIVERED: [FailedPrecondition], ShowUser, "market, redemption: RedriveOutbox";

    // ---- ledger ----
    /// The asset is not in the catalog.
    ASSET_NOT_FOUND: [NotFound], FixInput, "ledger: AdjustBalance, PostTransaction, CreateHold, ConvertAsset, DefineConversionRule, RecalculateBalance; market: DefineOffer, GrantBundle";
    /// A system account that is not configured.
    ACCOUNT_NOT_FOUND: [NotFound], FixInput, "ledger: PostTransaction, SettleHold";
    /// No conversion rule with this id.
    RULE_NOT_FOUND: [NotFound], FixInput, "ledger: ConvertAsset";
    /// The conversion rule exists but is disabled.
    RULE_DISABLED: [FailedPrecondition], ShowUser, "ledger: ConvertAsset";
    /// A user's available balance would go negative.
    INSUFFICIENT_BALANCE: [FailedPrecondition], ShowUser, "ledger: AdjustBalance, PostTransaction, CreateHold, ConvertAsset; market: PurchaseListing (trade failed), CreateListing, PurchaseOffer (exchange failed)";
    /// A balance would leave the 64-bit range.
    BALANCE_OVERFLOW: [OutOfRange], FixInput, "ledger: AdjustBalance, PostTransaction, SettleHold, ConvertAsset, RecalculateBalance";
    /// The postings of an asset do not sum to zero.
    UNBALANCED_TRANSACTION: [InvalidArgument], FixInput, "ledger: PostTransaction";
    /// No balance, posting or open hold for this account and asset: nothing to recalculate.
    BALANCE_NOT_FOUND: [NotFound], FixInput, "ledger: RecalculateBalance";
    /// No hold with this id.
    HOLD_NOT_FOUND: [NotFound], FixInput, "ledger: SettleHold, ReleaseHold, GetHold, ForceReleaseHold, PostTransaction (hold settlements)";
    /// The hold was settled, released or expired before.
    HOLD_ALREADY_RESOLVED: [FailedPrecondition], ShowUser, "ledger: SettleHold, ReleaseHold, ForceReleaseHold, PostTransaction (hold settlements)";
    /// The hold is at or past its `expires_at`, whether or not the expiry job has released
    /// it yet.
    HOLD_EXPIRED: [FailedPrecondition], ShowUser, "ledger: SettleHold, PostTransaction (hold settlements)";
    /// Settling more than the hold froze.
    HOLD_AMOUNT_EXCEEDED: [FailedPrecondition], FixInput, "ledger: SettleHold, PostTransaction (hold settlements)";
    /// No journal entry with this id.
    TRANSACTION_NOT_FOUND: [NotFound], FixInput, "ledger: GetTransaction";

    // ---- items ----
    /// The item template is not defined.
    TEMPLATE_NOT_FOUND: [NotFound], FixInput, "items: GetTemplate, GrantItem; market: DefineOffer, GrantBundle";
    /// No item instance with this id.
    ITEM_NOT_FOUND: [NotFound], FixInput, "items: GetItem, LockItem, UnlockItem, TransferItem, ConsumeItem, RevokeItem, ForceUnlockItem, ListItemEvents; market: CreateListing; redemption: CreateOrder";
    /// The item is locked or used, not available.
    ITEM_NOT_AVAILABLE: [FailedPrecondition], ShowUser, "items: LockItem, RevokeItem; market: CreateListing, PurchaseListing (trade failed); redemption: CreateOrder";
    /// The item is locked by another holder.
    ITEM_LOCKED_BY_OTHER: [FailedPrecondition], ShowUser, "items: LockItem, UnlockItem, TransferItem, ConsumeItem; market, redemption (relayed)";
    /// The item is not locked (by anyone).
    ITEM_NOT_LOCKED: [FailedPrecondition], ShowUser, "items: UnlockItem, TransferItem, ConsumeItem, ForceUnlockItem";
    /// The item's template is not consumable by its owner.
    ITEM_NOT_CONSUMABLE: [FailedPrecondition], FixInput, "items: ConsumeItem";
    /// The item is past its own expiry.
    ITEM_EXPIRED: [FailedPrecondition], ShowUser, "items: LockItem, TransferItem, ConsumeItem";
    /// The lock on the item is past its `lock_expires_at` (the holder may still unlock).
    ITEM_LOCK_EXPIRED: [FailedPrecondition], ShowUser, "items: TransferItem, ConsumeItem; market: PurchaseListing (trade failed)";
    /// The item is not owned by the expected user.
    ITEM_OWNER_MISMATCH: [FailedPrecondition], ShowUser, "items: LockItem, TransferItem; market: CreateListing; redemption: CreateOrder";
    /// The item already belongs to the target user.
    ITEM_SAME_OWNER: [FailedPrecondition], FixInput, "items: TransferItem";
    /// The item (or its lock) is not due for expiry; answered to the expiry job only.
    ITEM_NOT_DUE: [FailedPrecondition], Retry, "items: the expiry job (internal)";
    /// The item kept changing under concurrent writes; retry with the same key.
    ITEM_CONTENDED: [Aborted], Retry, "items: every item write";
    /// An import row's external id was imported before with other content; the stored row
    /// stays as it was (docs/import.md). Fix the file or the external id.
    IMPORT_ROW_CONFLICT: [AlreadyExists], FixInput, "items: ImportItems, redemption: ImportOrders (a row's result)";

    // ---- market ----
    /// No listing with this id.
    LISTING_NOT_FOUND: [NotFound], FixInput, "market: GetListing, PurchaseListing, CancelListing";
    /// The listing is sold, cancelled or expired, not on sale.
    LISTING_NOT_ON_SALE: [FailedPrecondition], ShowUser, "market: PurchaseListing, CancelListing";
    /// A retried creation whose listing failed (its escrow could not be taken); a new
    /// listing needs a new key.
    LISTING_FAILED: [FailedPrecondition], ShowUser, "market: CreateListing (retried)";
    /// The listing is past its `expires_at`.
    LISTING_EXPIRED: [FailedPrecondition], ShowUser, "market: PurchaseListing";
    /// A seller buying their own listing.
    OWN_LISTING: [FailedPrecondition], ShowUser, "market: PurchaseListing";
    /// The item already has an open listing.
    LISTING_ALREADY_OPEN: [FailedPrecondition], ShowUser, "market: CreateListing";
    /// The price asset is not one this market accepts.
    PRICE_ASSET_NOT_ALLOWED: [InvalidArgument], FixInput, "market: CreateListing";
    /// The item to list is not the seller's.
    ITEM_NOT_OWNED: [FailedPrecondition], ShowUser, "market: CreateListing";
    /// No offer with this id.
    OFFER_NOT_FOUND: [NotFound], FixInput, "market: GetOffer, DisableOffer, PurchaseOffer";
    /// The offer is disabled or outside its availability window.
    OFFER_NOT_ACTIVE: [FailedPrecondition], ShowUser, "market: PurchaseOffer";
    /// The offer's stock left (`remaining` in the metadata) is below the quantity asked.
    OFFER_SOLD_OUT: [FailedPrecondition], ShowUser, "market: PurchaseOffer";
    /// The user's per-user limit of the offer (in all, or within its rolling window) would
    /// be exceeded.
    PURCHASE_LIMIT_REACHED: [FailedPrecondition], ShowUser, "market: PurchaseOffer";
    /// Another request with the key, or the recovery worker, is advancing the exchange;
    /// retry with the same key.
    EXCHANGE_IN_PROGRESS: [Aborted], Retry, "market: PurchaseOffer, GrantBundle";
    /// No exchange with this id.
    EXCHANGE_NOT_FOUND: [NotFound], FixInput, "market: GetExchange";
    /// An upstream service (named in the `upstream` metadata) did not answer or answered
    /// with an outage; retry with the same idempotency key.
    UPSTREAM_UNAVAILABLE: [Unavailable], Retry, "market: CreateListing, PurchaseListing, CancelListing, DefineOffer, PurchaseOffer, GrantBundle; gateway: every routed RPC, GetBackpack, CheckConsistency";

    // ---- redemption ----
    /// A code is 12 symbols from `23456789ABCDEFGHJKMNPQRSTUVWXYZ`, e.g. `ABCD-EFGH-JK23`.
    CODE_INVALID_FORMAT: [InvalidArgument], FixInput, "redemption: FulfillOrder";
    /// No order has this code.
    CODE_NOT_FOUND: [NotFound], ShowUser, "redemption: FulfillOrder";
    /// The code was already redeemed.
    CODE_ALREADY_USED: [FailedPrecondition], ShowUser, "redemption: FulfillOrder";
    /// The code has expired.
    CODE_EXPIRED: [FailedPrecondition], ShowUser, "redemption: FulfillOrder, ReissueCode, ReissueCodeOnBehalf";
    /// The code's order was cancelled.
    CODE_CANCELLED: [FailedPrecondition], ShowUser, "redemption: FulfillOrder, ReissueCode, ReissueCodeOnBehalf";
    /// No order with this id.
    ORDER_NOT_FOUND: [NotFound], FixInput, "redemption: GetOrder, CancelOrder, ReissueCode, ReissueCodeOnBehalf";
    /// The order is not pending (fulfilled, cancelled, expired or failed).
    ORDER_NOT_PENDING: [FailedPrecondition], ShowUser, "redemption: CancelOrder";
    /// The order failed (its item could not be locked); create a new order with a new key.
    ORDER_FAILED: [FailedPrecondition], ShowUser, "redemption: CreateOrder (retried), FulfillOrder, ReissueCode";
    /// The item already has an open redemption order.
    ORDER_ALREADY_OPEN: [FailedPrecondition], ShowUser, "redemption: CreateOrder";
    /// The item's template is not redeemable.
    ITEM_NOT_REDEEMABLE: [FailedPrecondition], ShowUser, "redemption: CreateOrder";
    /// The items service did not answer or answered with an outage; retry with the same
    /// idempotency key.
    ITEMS_UNAVAILABLE: [Unavailable], Retry, "redemption: CreateOrder, FulfillOrder, CancelOrder";
    /// Too many failed redemption attempts by this caller; retry after `retry_after_secs`.
    FULFILL_RATE_LIMITED: [ResourceExhausted], Retry, "redemption: FulfillOrder";

    // ---- gateway ----
    /// No `authorization: Bearer <token>` metadata.
    TOKEN_MISSING: [Unauthenticated], FixInput, "gateway: every RPC";
    /// The bearer token is malformed, forged, of an unknown algorithm or has bad claims.
    TOKEN_INVALID: [Unauthenticated], FixInput, "gateway: every RPC";
    /// The bearer token has expired: get a new one.
    TOKEN_EXPIRED: [Unauthenticated], FixInput, "gateway: every RPC";
    /// The bearer token is not valid yet (`nbf`).
    TOKEN_NOT_YET_VALID: [Unauthenticated], Retry, "gateway: every RPC";
    /// The bearer token is signed by a key (`kid`) the gateway does not know (yet): it
    /// fetches its JWKS again on an unknown key at most every `jwks_min_refresh_secs`.
    /// Retry later; a token that still fails was not issued by the configured provider.
    TOKEN_KEY_UNKNOWN: [Unauthenticated], Retry, "gateway: every RPC";
    /// The bearer token is genuine but a claim does not fit (`claim` in the metadata): the
    /// user id is missing or not a positive integer, the role is outside 0..=100, or `iss`,
    /// `aud` or `exp` is missing or not the configured one.
    TOKEN_CLAIM_INVALID: [Unauthenticated], FixInput, "gateway: every RPC";
    /// The caller's role is below the method's minimum (`min_role_level` in the metadata).
    ROLE_TOO_LOW: [PermissionDenied], FixInput, "gateway: every RPC";
    /// Too many requests from this user; slow down.
    RATE_LIMITED: [ResourceExhausted], Retry, "gateway: every RPC";
    /// The gateway is at its in-flight limit; retry later.
    OVERLOADED: [ResourceExhausted], Retry, "gateway: every RPC";
    /// The user, or the gateway as a whole, holds as many open streams as allowed
    /// (`scope` = `user` or `gateway`, `limit`); end one, or retry later.
    TOO_MANY_STREAMS: [ResourceExhausted], Retry, "gateway: server-streaming RPCs";
    /// A write without the `idempotency-key` metadata.
    MISSING_IDEMPOTENCY_KEY: [InvalidArgument], FixInput, "gateway: every routed write";
    /// The `idempotency-key` metadata is not a UUID (optionally prefixed `idem_`).
    INVALID_IDEMPOTENCY_KEY: [InvalidArgument], FixInput, "gateway: every routed write";
    /// The idempotency key was used for a request with different content
    /// (`original-request-id` in the metadata).
    IDEMPOTENCY_KEY_CONFLICT: [AlreadyExists], FixInput, "gateway: every routed write";
    /// A request with this idempotency key is still processing; retry later.
    REQUEST_PROCESSING: [Aborted], Retry, "gateway: every routed write";
    /// The upstream did not answer within the gateway's deadline; retry with the same key.
    UPSTREAM_TIMEOUT: [DeadlineExceeded], Retry, "gateway: every routed RPC";
    /// A write method without a canonical operation in its proto options (a build error).
    CANONICAL_OPERATION_NOT_DEFINED: [Internal], ContactOperator, "gateway: a routed write";
    /// A replayed failure whose answer was too large to keep; it comes with the code of the
    /// stored failure.
    RESPONSE_TRUNCATED: [InvalidArgument, FailedPrecondition, NotFound, AlreadyExists, OutOfRange], ShowUser, "gateway: a replayed write";
    /// No idempotency record for this user and key.
    IDEMPOTENCY_RECORD_NOT_FOUND: [NotFound], FixInput, "gateway: GetIdempotencyRecord, ReleaseIdempotencyRecord";
    /// Only a processing record can be released; this one is completed or failed.
    IDEMPOTENCY_RECORD_NOT_PROCESSING: [FailedPrecondition], ShowUser, "gateway: ReleaseIdempotencyRecord";
    /// The record's lease has not run out: its owner may still be working; release it after
    /// `lease_expires_at` (in the metadata).
    IDEMPOTENCY_RECORD_LEASE_ACTIVE: [FailedPrecondition], Retry, "gateway: ReleaseIdempotencyRecord";
    /// The record kept changing during an operator's release; retry.
    CONTENDED: [Aborted], Retry, "gateway: ReleaseIdempotencyRecord";
}

/// The catalogue entry of `reason`, if it is catalogued.
pub fn entry(reason: &str) -> Option<&'static Entry> {
    CATALOGUE.iter().find(|entry| entry.reason == reason)
}

/// Whether `reason` is in the catalogue.
pub fn is_catalogued(reason: &str) -> bool {
    entry(reason).is_some()
}

/// The name of a gRPC code as the protos write it (`FAILED_PRECONDITION`).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The catalogue as the Markdown table of `docs/errors.md`: one row per reason, in
/// catalogue order.
pub fn markdown_table() -> String {
    let mut table = String::from(
        "| Reason | gRPC code | Returned by | Client action | HTTP status | Meaning |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for entry in CATALOGUE {
        let codes: Vec<&str> = entry.codes.iter().map(|code| code_name(*code)).collect();
        let http: Vec<String> = entry.http_statuses().iter().map(u16::to_string).collect();
        table.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            entry.reason,
            codes.join(" / "),
            entry.returned_by,
            entry.action.as_str(),
            http.join(" / "),
            entry.meaning.trim(),
        ));
    }
    table
}

/// Panics, in debug builds only, when `reason` is not catalogued: every status with an
/// `ErrorInfo` is built through `economy_kit::error`, which calls this, so a test that
/// makes a service return an uncatalogued reason fails.
#[track_caller]
pub fn debug_assert_catalogued(reason: &str) {
    if cfg!(debug_assertions) && !is_catalogued(reason) {
        panic!(
            "ErrorInfo.reason {reason:?} is not in the error-reason catalogue: add it to \
             shared/kit/src/reasons.rs and docs/errors.md, or use a catalogued reason"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::{Path, PathBuf};

    use super::*;

    fn workspace() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn reasons_are_unique_upper_snake_with_a_meaning() {
        let mut seen = HashSet::new();
        for entry in CATALOGUE {
            assert!(seen.insert(entry.reason), "{} twice", entry.reason);
            assert!(is_upper_snake(entry.reason), "{}", entry.reason);
            assert!(!entry.codes.is_empty() && !entry.meaning.trim().is_empty(), "{}", entry.reason);
            assert!(!entry.returned_by.is_empty(), "{}", entry.reason);
        }
    }

    #[test]
    fn the_bff_rule_maps_the_documented_examples() {
        assert_eq!(http_status(Code::FailedPrecondition, CODE_ALREADY_USED), 409);
        assert_eq!(http_status(Code::FailedPrecondition, CODE_CANCELLED), 409);
        assert_eq!(http_status(Code::FailedPrecondition, CODE_EXPIRED), 410);
        assert_eq!(http_status(Code::FailedPrecondition, INSUFFICIENT_BALANCE), 409);
        assert_eq!(http_status(Code::Unauthenticated, TOKEN_EXPIRED), 401);
        assert_eq!(http_status(Code::ResourceExhausted, RATE_LIMITED), 429);
        assert_eq!(http_status(Code::Unavailable, UPSTREAM_UNAVAILABLE), 503);
        assert_eq!(http_status(Code::InvalidArgument, VALIDATION_FAILED), 400);
    }

    #[test]
    #[should_panic(expected = "not in the error-reason catalogue")]
    #[cfg(debug_assertions)]
    fn an_uncatalogued_reason_panics_in_debug_builds() {
        debug_assert_catalogued("NOT_A_CATALOGUED_REASON");
    }

    /// `docs/errors.md` holds the generated table verbatim, between two markers.
    #[test]
    fn docs_list_exactly_the_catalogue() {
        let path = workspace().join("docs/errors.md");
        let text = std::fs::read_to_string(&path).expect("docs/errors.md");
        let (_, rest) = text.split_once(TABLE_START).expect("docs/errors.md: table start marker");
        let (table, _) = rest.split_once(TABLE_END).expect("docs/errors.md: table end marker");
        let documented: Vec<&str> = table
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|line| line.split_once('`').map(|(reason, _)| reason))
            .collect();
        let catalogued: Vec<&str> = CATALOGUE.iter().map(|entry| entry.reason).collect();
        assert_eq!(documented, catalogued, "docs/errors.md lists other reasons than the catalogue");
        assert_eq!(
            table.trim(),
            markdown_table().trim(),
            "docs/errors.md's table is stale: replace it with economy_kit::reasons::markdown_table() \
             (printed by `cargo test -p economy-kit print_errors_table -- --ignored --nocapture`)"
        );
    }

    /// Prints the table of `docs/errors.md`.
    #[test]
    #[ignore = "prints the docs table; run explicitly"]
    fn print_errors_table() {
        println!("{TABLE_START}\n{}{TABLE_END}", markdown_table());
    }

    const TABLE_START: &str = "<!-- catalogue:start -->";
    const TABLE_END: &str = "<!-- catalogue:end -->";

    fn is_upper_snake(text: &str) -> bool {
        text.starts_with(|c: char| c.is_ascii_uppercase())
            && text.ends_with(|c: char| c.is_ascii_uppercase() || c.is_ascii_digit())
            && text.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    }

    /// Markers that put a string literal in the position of a reason: the argument of a
    /// status constructor, a pair with a gRPC code, or a reason compared in a test.
    const REASON_CONTEXT: [&str; 8] =
        ["status(", "invalid_field(", "unauthenticated(", "Code::", "reason", "assert_error", "Refused", "error("];

    /// UPPER_SNAKE literals the scan takes for reasons that are not: audit actions and
    /// business types written next to an audit record's `reason` field, and the example of
    /// an uncatalogued reason in the tests — keep this short.
    const NOT_REASONS: [&str; 3] =
        ["NOT_A_CATALOGUED_REASON", "ADMIN_FORCE_UNLOCK", "GATEWAY_RELEASE_IDEMPOTENCY_RECORD"];

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }

    /// The UPPER_SNAKE string literals of `source` whose statement (the text since the
    /// last `;`, `{`, `}` or `=>`) holds a [`REASON_CONTEXT`] marker.
    fn literal_reasons(source: &str) -> Vec<(usize, String)> {
        let mut found = Vec::new();
        let bytes = source.as_bytes();
        let mut statement_start = 0;
        let mut index = 0;
        while index < bytes.len() {
            match bytes[index] {
                b';' | b'{' | b'}' => statement_start = index + 1,
                b'=' if bytes.get(index + 1) == Some(&b'>') => statement_start = index + 2,
                b'/' if bytes.get(index + 1) == Some(&b'/') => {
                    // A comment: skip to the end of the line.
                    index = source[index..].find('\n').map_or(bytes.len(), |end| index + end);
                    continue;
                }
                b'\'' if bytes.get(index + 2) == Some(&b'\'') => index += 2,
                b'"' => {
                    let mut end = index + 1;
                    while end < bytes.len() && bytes[end] != b'"' {
                        end += if bytes[end] == b'\\' { 2 } else { 1 };
                    }
                    let literal = &source[index + 1..end.min(bytes.len())];
                    let context = &source[statement_start..index];
                    if literal.contains('_')
                        && is_upper_snake(literal)
                        && REASON_CONTEXT.iter().any(|marker| context.contains(marker))
                    {
                        found.push((source[..index].lines().count(), literal.to_owned()));
                    }
                    index = end + 1;
                    continue;
                }
                _ => {}
            }
            index += 1;
        }
        found
    }

    #[test]
    fn the_scan_finds_reasons_in_reason_position() {
        let source = "fn f() { status(Code::NotFound, DOMAIN, \"SOME_REASON\", \"m\", []); }\n\
                      fn g() { report.add(\"FINDING_KIND\", d); }\n\
                      fn h() { assert_eq!(reason(&s).as_deref(), Some(\"OTHER_REASON\")); }";
        let found: Vec<String> = literal_reasons(source).into_iter().map(|(_, reason)| reason).collect();
        assert_eq!(found, ["SOME_REASON", "OTHER_REASON"]);
    }

    /// Every UPPER_SNAKE string literal passed or compared as a reason anywhere in the
    /// workspace (services, shared crates, tests, bench) is catalogued.
    #[test]
    fn literal_reasons_in_the_workspace_are_catalogued() {
        let mut files = Vec::new();
        for dir in ["services", "shared", "tests", "bench"] {
            rust_files(&workspace().join(dir), &mut files);
        }
        assert!(files.len() > 20, "the scan found only {} Rust files", files.len());
        let mut unknown = Vec::new();
        for file in files {
            if file.ends_with("shared/kit/src/reasons.rs") {
                continue;
            }
            let source = std::fs::read_to_string(&file).unwrap_or_default();
            for (line, literal) in literal_reasons(&source) {
                if !is_catalogued(&literal) && !NOT_REASONS.contains(&literal.as_str()) && !is_code_name(&literal) {
                    unknown.push(format!("{}:{line}: {literal}", file.display()));
                }
            }
        }
        assert!(unknown.is_empty(), "reasons not in the catalogue:\n{}", unknown.join("\n"));
    }

    fn is_code_name(text: &str) -> bool {
        (0..=16).any(|code| code_name(Code::from_i32(code)) == text)
    }
}
