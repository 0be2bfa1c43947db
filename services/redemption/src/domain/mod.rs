//! The redemption rules (docs/redemption.md), free of SQL and gRPC: codes, the order
//! lifecycle and every way an operation can fail.

pub mod code;
pub mod compensation;
pub mod error;
pub mod import;
pub mod order;

pub use code::Code;
pub use error::RedemptionError;
pub use order::{Order, OrderStatus};

/// Holder name of the item lock of `order_id`: `redemption:<order_id>`.
pub fn lock_holder(order_id: &str) -> String {
    format!("redemption:{order_id}")
}

/// Deterministic idempotency key of an Items call made for `order_id`
/// (`<order_id>:lock`, `:consume`, `:unlock`; docs/idempotency.md, "Derived keys in the services").
pub fn items_key(order_id: &str, action: &str) -> String {
    format!("{order_id}:{action}")
}
