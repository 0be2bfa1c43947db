//! The order lifecycle: `locking -> pending | failed`, then `pending -> fulfilled |
//! cancelled | expired`. Only a pending order before its `expires_at` redeems.

use super::error::RedemptionError;

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    /// Created; its item is being locked. The code does not redeem yet.
    Locking,
    /// The item is locked; the code redeems until `expires_at`.
    Pending,
    /// Redeemed; the item is (being) consumed.
    Fulfilled,
    /// Cancelled; the item is (being) unlocked.
    Cancelled,
    /// Past `expires_at` unredeemed; the item is (being) unlocked.
    Expired,
    /// The item could not be locked.
    Failed,
}

impl OrderStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [Self; 6] =
        [Self::Locking, Self::Pending, Self::Fulfilled, Self::Cancelled, Self::Expired, Self::Failed];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Locking => "locking",
            Self::Pending => "pending",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    /// The status stored as `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }
}

/// An order as stored (timestamps in ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// UUIDv7.
    pub id: String,
    /// The item redeemed.
    pub item_instance_id: String,
    /// The item's owner at creation.
    pub owner_user_id: i64,
    /// Lifecycle status.
    pub status: OrderStatus,
    /// `user:<id>` or `service:<name>`.
    pub created_by: String,
    /// Creation instant.
    pub created_at: i64,
    /// The code no longer redeems from this instant.
    pub expires_at: i64,
    /// When the current code was issued.
    pub code_issued_at: i64,
    /// When it left `locking` / `pending` for a final status.
    pub resolved_at: Option<i64>,
    /// The staff user who fulfilled it.
    pub redeemer_user_id: Option<i64>,
}

impl Order {
    /// Whether this order's code redeems at `now`; otherwise the reason a customer sees:
    /// `CODE_ALREADY_USED`, `CODE_CANCELLED`, `CODE_EXPIRED` (also for a pending order
    /// past `expires_at` before the expiry job ran), or `CODE_NOT_FOUND` for an order
    /// whose code was never live.
    pub fn check_redeemable(&self, now: i64) -> Result<(), RedemptionError> {
        match self.status {
            OrderStatus::Pending if now < self.expires_at => Ok(()),
            OrderStatus::Pending | OrderStatus::Expired => Err(RedemptionError::CodeExpired(self.id.clone())),
            OrderStatus::Fulfilled => Err(RedemptionError::CodeAlreadyUsed(self.id.clone())),
            OrderStatus::Cancelled => Err(RedemptionError::CodeCancelled(self.id.clone())),
            OrderStatus::Locking | OrderStatus::Failed => Err(RedemptionError::CodeNotFound),
        }
    }

    /// How a retried CreateOrder of this order is answered when it gets no fresh code:
    /// `Ok` (returned as it is) for a fulfilled order (its creation succeeded and its code
    /// was used), a locking one (being activated) or a pending one before `expires_at`;
    /// otherwise the end the order came to: `CODE_EXPIRED` (also a pending order past
    /// `expires_at` before the expiry job ran), `CODE_CANCELLED`, `ORDER_FAILED`.
    pub fn check_created(&self, now: i64) -> Result<(), RedemptionError> {
        match self.status {
            OrderStatus::Fulfilled | OrderStatus::Locking => Ok(()),
            OrderStatus::Pending if now < self.expires_at => Ok(()),
            OrderStatus::Pending | OrderStatus::Expired => Err(RedemptionError::CodeExpired(self.id.clone())),
            OrderStatus::Cancelled => Err(RedemptionError::CodeCancelled(self.id.clone())),
            OrderStatus::Failed => Err(RedemptionError::OrderFailed(self.id.clone())),
        }
    }

    /// Whether the order may still be cancelled or get a new code: it is pending.
    pub fn check_pending(&self) -> Result<(), RedemptionError> {
        match self.status {
            OrderStatus::Pending => Ok(()),
            status => Err(RedemptionError::OrderNotPending { order_id: self.id.clone(), status: status.as_str() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> Order {
        Order {
            id: "o1".into(),
            item_instance_id: "i1".into(),
            owner_user_id: 2,
            status,
            created_by: "user:2".into(),
            created_at: 0,
            expires_at: 1_000,
            code_issued_at: 0,
            resolved_at: None,
            redeemer_user_id: None,
        }
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(OrderStatus::parse("redeemed"), None);
    }

    #[test]
    fn only_a_pending_order_before_expiry_redeems() {
        assert_eq!(order(OrderStatus::Pending).check_redeemable(999), Ok(()));
        assert_eq!(order(OrderStatus::Pending).check_redeemable(1_000), Err(RedemptionError::CodeExpired("o1".into())));
        assert_eq!(order(OrderStatus::Expired).check_redeemable(0), Err(RedemptionError::CodeExpired("o1".into())));
        assert_eq!(
            order(OrderStatus::Fulfilled).check_redeemable(0),
            Err(RedemptionError::CodeAlreadyUsed("o1".into()))
        );
        assert_eq!(order(OrderStatus::Cancelled).check_redeemable(0), Err(RedemptionError::CodeCancelled("o1".into())));
        assert_eq!(order(OrderStatus::Locking).check_redeemable(0), Err(RedemptionError::CodeNotFound));
        assert_eq!(order(OrderStatus::Failed).check_redeemable(0), Err(RedemptionError::CodeNotFound));
    }

    #[test]
    fn a_retried_creation_answers_how_the_order_ended() {
        assert_eq!(order(OrderStatus::Fulfilled).check_created(5_000), Ok(()));
        assert_eq!(order(OrderStatus::Pending).check_created(999), Ok(()));
        assert_eq!(order(OrderStatus::Pending).check_created(1_000), Err(RedemptionError::CodeExpired("o1".into())));
        assert_eq!(order(OrderStatus::Expired).check_created(0), Err(RedemptionError::CodeExpired("o1".into())));
        assert_eq!(order(OrderStatus::Cancelled).check_created(0), Err(RedemptionError::CodeCancelled("o1".into())));
        assert_eq!(order(OrderStatus::Failed).check_created(0), Err(RedemptionError::OrderFailed("o1".into())));
    }

    #[test]
    fn only_pending_orders_can_be_cancelled_or_reissued() {
        assert_eq!(order(OrderStatus::Pending).check_pending(), Ok(()));
        for status in [OrderStatus::Locking, OrderStatus::Fulfilled, OrderStatus::Cancelled, OrderStatus::Expired] {
            assert!(order(status).check_pending().is_err(), "{status:?}");
        }
    }
}
