//! proto <-> domain conversion of orders.

use economy_kit::time::to_timestamp;
use economy_proto::redemption::v1 as pb;

use crate::domain::{Order, OrderStatus};

/// Default page size of ListOrders.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest accepted page size.
pub const MAX_PAGE_SIZE: i32 = 500;

/// Domain status -> proto.
pub fn status(status: OrderStatus) -> pb::OrderStatus {
    match status {
        OrderStatus::Locking => pb::OrderStatus::Locking,
        OrderStatus::Pending => pb::OrderStatus::Pending,
        OrderStatus::Fulfilled => pb::OrderStatus::Fulfilled,
        OrderStatus::Cancelled => pb::OrderStatus::Cancelled,
        OrderStatus::Expired => pb::OrderStatus::Expired,
        OrderStatus::Failed => pb::OrderStatus::Failed,
    }
}

/// Proto status filter -> domain (`None` for UNSPECIFIED or unknown values).
pub fn status_filter(value: i32) -> Option<OrderStatus> {
    let index = usize::try_from(value).ok()?.checked_sub(1)?;
    OrderStatus::ALL.get(index).copied()
}

/// Domain order -> proto.
pub fn order(order: &Order) -> pb::Order {
    pb::Order {
        id: order.id.clone(),
        item_instance_id: order.item_instance_id.clone(),
        owner_user_id: order.owner_user_id,
        status: status(order.status).into(),
        created_by: order.created_by.clone(),
        created_at: Some(to_timestamp(order.created_at)),
        expires_at: Some(to_timestamp(order.expires_at)),
        resolved_at: order.resolved_at.map(to_timestamp),
        redeemer_user_id: order.redeemer_user_id.unwrap_or_default(),
        code_issued_at: Some(to_timestamp(order.code_issued_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_filter_matches_the_proto_numbering() {
        assert_eq!(status_filter(0), None);
        for domain in OrderStatus::ALL {
            assert_eq!(status_filter(status(domain) as i32), Some(domain));
        }
        assert_eq!(status_filter(99), None);
    }
}
