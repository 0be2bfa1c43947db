//! The redemption flows (docs/redemption.md, "Outbox and jobs"): each step is a compare-and-set in
//! the store or an Items call with a deterministic key, ordered so that a crash or a
//! retry at any point converges:
//!
//! - create: insert the order `locking` -> lock the item (`<order>:lock`) -> `pending`
//!   with a fresh code. A retry of a `locking` order resumes; the stale-locking job fails
//!   orders stuck there and owes an unlock.
//! - fulfil / cancel / expiry: `pending -> fulfilled | cancelled | expired` with the
//!   owed consume / unlock in the outbox, same transaction; delivered at once and by the
//!   dispatcher until Items confirms.

pub mod compensation;
pub mod guard;
pub mod import;

use std::sync::Arc;

use economy_kit::identity::Caller;
use economy_kit::time::Clock;

use self::guard::FulfillGuard;
use crate::clients::CallError;
use crate::clients::items::Items;
use crate::domain::{Code, Order, OrderStatus, RedemptionError, items_key, lock_holder};
use crate::metrics;
use crate::store::{Action, Insert, OrderFilter, OutboxAction, RedemptionStore, Resolution};

/// Attempts at drawing a code whose hash is not taken.
const CODE_ATTEMPTS: usize = 5;

/// A created order and the only copy of its code.
#[derive(Debug)]
pub struct Created {
    /// The order.
    pub order: Order,
    /// The code, when this call issued one.
    pub code: Option<Code>,
    /// True when the key had already created the order.
    pub replayed: bool,
}

/// The redemption service's state.
#[derive(Debug)]
pub struct Redemption {
    /// Orders, actions and outbox.
    pub store: RedemptionStore,
    /// Items, called with the service identity.
    pub items: Items,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// Lifetime of a code, ms.
    pub order_ttl_ms: i64,
    /// Failed-fulfil rate limit.
    pub guard: FulfillGuard,
}

fn require(allowed: bool, what: &str) -> Result<(), RedemptionError> {
    allowed.then_some(()).ok_or_else(|| RedemptionError::PermissionDenied(format!("the caller may not {what}")))
}

impl Redemption {
    /// CreateOrder: the item's owner or staff; the item must be available and
    /// redeemable and have no open order. A retry with the same key is answered from the
    /// order the key created (see `resume_create`) before any check of the item.
    /// An open order of the item past its `expires_at` is expired first (as the job
    /// would), so it does not block a new one. Errors: ORDER_ALREADY_OPEN,
    /// ITEM_NOT_REDEEMABLE, Items' own refusals,
    /// ITEMS_UNAVAILABLE, PERMISSION_DENIED, IDEMPOTENCY_KEY_REUSED (the key created an
    /// order for another item); on a retry also CODE_EXPIRED, CODE_CANCELLED, ORDER_FAILED.
    pub async fn create(&self, caller: &Caller, key: &str, item_id: &str) -> Result<Created, RedemptionError> {
        if let Some(order) = self.store.order_by_create_key(key).await? {
            return self.resume_create(caller, key, item_id, order).await;
        }
        let item = self.items.get(item_id).await.map_err(RedemptionError::from)?;
        require(caller.may_act_for(item.owner_user_id) || caller.is_staff(), "redeem another user's item")?;
        if !item.redeemable {
            return Err(RedemptionError::ItemNotRedeemable(item_id.to_owned()));
        }
        let now = self.clock.now_millis();
        let order = Order {
            id: uuid::Uuid::now_v7().to_string(),
            item_instance_id: item_id.to_owned(),
            owner_user_id: item.owner_user_id,
            status: OrderStatus::Locking,
            created_by: caller.actor(),
            created_at: now,
            expires_at: now.saturating_add(self.order_ttl_ms),
            code_issued_at: now,
            resolved_at: None,
            redeemer_user_id: None,
        };
        for _ in 0..CODE_ATTEMPTS {
            // The code of a `locking` order never redeems; the real one is drawn on activation.
            if self.store.insert_order(&order, &Code::generate().hash(), key).await? == Insert::Created {
                metrics::order_created();
                return self.lock_and_activate(order, false).await;
            }
            if let Some(existing) = self.store.order_by_create_key(key).await? {
                return self.resume_create(caller, key, item_id, existing).await;
            }
            if let Some(open) = self.store.open_order_of_item(item_id).await? {
                // An open order past its expiry is expired already, whether or not the
                // job ran: make it so (its unlock delivered at once), then try again.
                let lapsed = open.status == OrderStatus::Pending && now >= open.expires_at;
                if !(lapsed && self.expire(&open, now).await?) {
                    return Err(RedemptionError::OrderAlreadyOpen(item_id.to_owned()));
                }
            }
        }
        Err(RedemptionError::Storage("no free code after several draws".into()))
    }

    /// A retried creation (the key already created `order`). A `locking` order is resumed;
    /// a pending, unexpired one gets a fresh code that replaces the old one (the first
    /// answer never reached the client, so its code was never shown; only the new code's
    /// hash is stored); a fulfilled one is returned as it is, without a code. An order
    /// that ended otherwise answers its end: CODE_EXPIRED (also past `expires_at` before
    /// the expiry job ran), CODE_CANCELLED, ORDER_FAILED.
    async fn resume_create(
        &self,
        caller: &Caller,
        key: &str,
        item_id: &str,
        order: Order,
    ) -> Result<Created, RedemptionError> {
        if order.item_instance_id != item_id {
            return Err(RedemptionError::IdempotencyKeyReused(key.to_owned()));
        }
        require(caller.may_act_for(order.owner_user_id) || caller.is_staff(), "see another user's order")?;
        if order.status == OrderStatus::Locking {
            return self.lock_and_activate(order, true).await;
        }
        let now = self.clock.now_millis();
        let mut order = order;
        if order.check_redeemable(now).is_ok() {
            match self.issue_code(&order.id, OrderStatus::Pending).await? {
                (order, Some(code)) => return Ok(Created { order, code: Some(code), replayed: true }),
                // Resolved or expired meanwhile: answer as it is now.
                (current, None) => order = current,
            }
        }
        order.check_created(now)?;
        Ok(Created { order, code: None, replayed: true })
    }

    /// Locks the item for the order, then makes it `pending` with a fresh code.
    async fn lock_and_activate(&self, order: Order, replayed: bool) -> Result<Created, RedemptionError> {
        let holder = lock_holder(&order.id);
        let key = items_key(&order.id, "lock");
        match self.items.lock(&order.item_instance_id, &holder, order.owner_user_id, &key).await {
            Ok(()) => {}
            Err(CallError::Unavailable(_)) => return Err(RedemptionError::ItemsUnavailable),
            Err(error) => {
                if self.store.fail_locking(&order.id, &order.item_instance_id, self.clock.now_millis(), false).await? {
                    metrics::order_ended(OrderStatus::Failed);
                }
                return Err(error.into());
            }
        }
        let (order, code) = self.issue_code(&order.id, OrderStatus::Locking).await?;
        Ok(Created { order, code, replayed })
    }

    /// Draws a code and moves the order from `from` to `pending` with it; `None` when the
    /// order had left `from` or, from `pending`, reached `expires_at` (then it is returned
    /// as it is).
    async fn issue_code(&self, order_id: &str, from: OrderStatus) -> Result<(Order, Option<Code>), RedemptionError> {
        for _ in 0..CODE_ATTEMPTS {
            let code = Code::generate();
            match self.store.issue_code(order_id, from, &code.hash(), self.clock.now_millis()).await {
                Ok(issued) => {
                    let order = self.order(order_id).await?;
                    return Ok((order, issued.then_some(code)));
                }
                Err(error) if economy_kit::db::is_unique_violation(&error) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(RedemptionError::Storage("no free code after several draws".into()))
    }

    async fn order(&self, order_id: &str) -> Result<Order, RedemptionError> {
        self.store.order(order_id).await?.ok_or_else(|| RedemptionError::OrderNotFound(order_id.to_owned()))
    }

    /// FulfillOrder: staff redeem `code` once; the item is consumed through the outbox.
    /// A retry with the key of a fulfilment is answered from it first, whatever the
    /// clock, the order or the caller's lockout say now. Errors: CODE_INVALID_FORMAT,
    /// CODE_NOT_FOUND, CODE_ALREADY_USED, CODE_EXPIRED, CODE_CANCELLED (each counts
    /// against the caller's failure budget), FULFILL_RATE_LIMITED, IDEMPOTENCY_KEY_REUSED.
    /// Returns the order and whether the key had fulfilled it already.
    pub async fn fulfill(&self, caller: &Caller, key: &str, typed: &str) -> Result<(Order, bool), RedemptionError> {
        let fulfilled = self.fulfill_attempt(caller, key, typed).await;
        match &fulfilled {
            Ok((_, replayed)) if *replayed => {}
            result => metrics::fulfilment(result.is_ok()),
        }
        fulfilled
    }

    /// [`Self::fulfill`], uncounted.
    async fn fulfill_attempt(&self, caller: &Caller, key: &str, typed: &str) -> Result<(Order, bool), RedemptionError> {
        require(caller.is_staff(), "fulfil redemption orders")?;
        if let Some(order) = self.fulfil_replay(key, typed).await? {
            return Ok((order, true));
        }
        let actor = caller.actor();
        self.guard.check(&actor)?;
        let result = match Code::parse(typed) {
            Some(code) => self.fulfill_code(caller, key, &code).await,
            None => Err(RedemptionError::CodeInvalidFormat),
        };
        if let Err(
            RedemptionError::CodeInvalidFormat
            | RedemptionError::CodeNotFound
            | RedemptionError::CodeAlreadyUsed(_)
            | RedemptionError::CodeExpired(_)
            | RedemptionError::CodeCancelled(_),
        ) = &result
        {
            self.guard.record_failure(&actor);
        }
        result
    }

    /// The order `key` fulfilled when this is its retry (the same code);
    /// IDEMPOTENCY_KEY_REUSED when the key did something else; `None` when unused.
    async fn fulfil_replay(&self, key: &str, typed: &str) -> Result<Option<Order>, RedemptionError> {
        let Some((order_id, action)) = self.store.action(key).await? else {
            return Ok(None);
        };
        let same_code = match Code::parse(typed) {
            Some(code) => self.store.order_by_code_hash(&code.hash()).await?.is_some_and(|order| order.id == order_id),
            None => false,
        };
        if action != "fulfill" || !same_code {
            return Err(RedemptionError::IdempotencyKeyReused(key.to_owned()));
        }
        Ok(Some(self.order(&order_id).await?))
    }

    async fn fulfill_code(&self, caller: &Caller, key: &str, code: &Code) -> Result<(Order, bool), RedemptionError> {
        let order = self.store.order_by_code_hash(&code.hash()).await?.ok_or(RedemptionError::CodeNotFound)?;
        if let Some(replay) = self.replay_action(key, "fulfill", &order).await? {
            return Ok((replay, true));
        }
        let now = self.clock.now_millis();
        order.check_redeemable(now)?;
        let actor = caller.actor();
        let resolution = Resolution {
            order_id: &order.id,
            to: OrderStatus::Fulfilled,
            now,
            redeemer_user_id: caller.user_id(),
            action: Some(Action { key, name: "fulfill", actor: &actor, reason: "" }),
            owed: OutboxAction::Consume,
            item_instance_id: &order.item_instance_id,
        };
        if !self.resolve(&resolution).await? {
            let current = self.order(&order.id).await?;
            if let Some(replay) = self.replay_action(key, "fulfill", &current).await? {
                return Ok((replay, true));
            }
            current.check_redeemable(now)?;
            return Err(RedemptionError::CodeAlreadyUsed(order.id));
        }
        self.deliver_owed(&order.id).await;
        Ok((self.order(&order.id).await?, false))
    }

    /// The order when `key` already performed `action` on it; IDEMPOTENCY_KEY_REUSED when
    /// it performed something else.
    async fn replay_action(&self, key: &str, action: &str, order: &Order) -> Result<Option<Order>, RedemptionError> {
        match self.store.action(key).await? {
            None => Ok(None),
            Some((order_id, done)) if order_id == order.id && done == action => Ok(Some(self.order(&order_id).await?)),
            Some(_) => Err(RedemptionError::IdempotencyKeyReused(key.to_owned())),
        }
    }

    /// CancelOrder: the owner or staff; `pending -> cancelled`, the item unlocked through
    /// the outbox. A retry with the key of a cancellation is answered from it first. A
    /// pending order past `expires_at` is expired instead (as the expiry job would).
    /// Errors: ORDER_NOT_FOUND, ORDER_NOT_PENDING (with the order's status),
    /// PERMISSION_DENIED, IDEMPOTENCY_KEY_REUSED.
    pub async fn cancel(
        &self,
        caller: &Caller,
        key: &str,
        order_id: &str,
        reason: &str,
    ) -> Result<(Order, bool), RedemptionError> {
        let order = self.order(order_id).await?;
        require(caller.may_act_for(order.owner_user_id) || caller.is_staff(), "cancel another user's order")?;
        if let Some(replay) = self.replay_action(key, "cancel", &order).await? {
            return Ok((replay, true));
        }
        let now = self.clock.now_millis();
        if order.status == OrderStatus::Pending && now >= order.expires_at {
            // Expired from its instant, whether or not the expiry job ran: make it so.
            self.expire(&order, now).await?;
            self.order(order_id).await?.check_pending()?;
        }
        order.check_pending()?;
        let actor = caller.actor();
        let resolution = Resolution {
            order_id,
            to: OrderStatus::Cancelled,
            now,
            redeemer_user_id: None,
            action: Some(Action { key, name: "cancel", actor: &actor, reason }),
            owed: OutboxAction::Unlock,
            item_instance_id: &order.item_instance_id,
        };
        if !self.resolve(&resolution).await? {
            let current = self.order(order_id).await?;
            if let Some(replay) = self.replay_action(key, "cancel", &current).await? {
                return Ok((replay, true));
            }
            current.check_pending()?;
        }
        self.deliver_owed(order_id).await;
        Ok((self.order(order_id).await?, false))
    }

    /// ReissueCode: the owner only (an admin acting for a customer uses the audited
    /// `reissue_on_behalf`); a pending, unexpired order gets a fresh code and the old one
    /// stops redeeming. Every call draws a new code (only the latest redeems), so a retry
    /// is harmless. Errors: ORDER_NOT_FOUND, CODE_* of the order's state,
    /// PERMISSION_DENIED.
    pub async fn reissue(&self, caller: &Caller, order_id: &str) -> Result<(Order, Code), RedemptionError> {
        let order = self.order(order_id).await?;
        let own = caller.user_id() == Some(order.owner_user_id);
        require(own, "reissue another user's code (admins: ReissueCodeOnBehalf, with a reason)")?;
        let now = self.clock.now_millis();
        order.check_redeemable(now)?;
        match self.issue_code(order_id, OrderStatus::Pending).await? {
            (order, Some(code)) => Ok((order, code)),
            // Resolved meanwhile: say how.
            (order, None) => {
                Err(order.check_redeemable(self.clock.now_millis()).err().unwrap_or(RedemptionError::CodeNotFound))
            }
        }
    }

    /// GetOrder: the owner or staff.
    pub async fn get(&self, caller: &Caller, order_id: &str) -> Result<Order, RedemptionError> {
        let order = self.order(order_id).await?;
        require(caller.may_act_for(order.owner_user_id) || caller.is_staff(), "see another user's order")?;
        Ok(order)
    }

    /// ListOrders: users see their own orders only (of any item); staff any.
    pub async fn list(&self, caller: &Caller, mut filter: OrderFilter<'_>) -> Result<Vec<Order>, RedemptionError> {
        if !caller.is_staff() {
            let own = caller.user_id();
            require(filter.owner_user_id.is_none() || filter.owner_user_id == own, "list another user's orders")?;
            filter.owner_user_id = own;
        }
        Ok(self.store.list(&filter).await?)
    }

    /// Delivers the outbox rows of `order_id` now; failures are left to the dispatcher.
    async fn deliver_owed(&self, order_id: &str) {
        if let Err(error) = crate::jobs::dispatch(self, order_id).await {
            tracing::warn!(%error, order_id, "outbox delivery deferred");
        }
    }

    /// The store's `resolve`, counting the order's end when it moved.
    async fn resolve(&self, resolution: &Resolution<'_>) -> Result<bool, RedemptionError> {
        let moved = self.store.resolve(resolution).await?;
        if moved {
            metrics::order_ended(resolution.to);
        }
        Ok(moved)
    }

    /// Expires pending orders past `expires_at` (owing an unlock); returns how many.
    pub async fn expire_due(&self, limit: i64) -> Result<usize, RedemptionError> {
        let now = self.clock.now_millis();
        let mut expired = 0;
        for order in self.store.due(OrderStatus::Pending, "expires_at", now, limit).await? {
            if self.expire(&order, now).await? {
                expired += 1;
            }
        }
        Ok(expired)
    }

    /// `pending -> expired` of `order` at `now`, owing an unlock (delivered at once);
    /// false when the order was no longer pending.
    async fn expire(&self, order: &Order, now: i64) -> Result<bool, RedemptionError> {
        let resolution = Resolution {
            order_id: &order.id,
            to: OrderStatus::Expired,
            now,
            redeemer_user_id: None,
            action: None,
            owed: OutboxAction::Unlock,
            item_instance_id: &order.item_instance_id,
        };
        let expired = self.resolve(&resolution).await?;
        if expired {
            self.deliver_owed(&order.id).await;
        }
        Ok(expired)
    }

    /// Fails orders stuck in `locking` since before `cutoff` (their creator gave up),
    /// owing an unlock in case the lock happened; returns how many.
    pub async fn fail_stale_locking(&self, cutoff: i64, limit: i64) -> Result<usize, RedemptionError> {
        let mut failed = 0;
        for order in self.store.due(OrderStatus::Locking, "created_at", cutoff, limit).await? {
            let now = self.clock.now_millis();
            if self.store.fail_locking(&order.id, &order.item_instance_id, now, true).await? {
                metrics::order_ended(OrderStatus::Failed);
                failed += 1;
                self.deliver_owed(&order.id).await;
            }
        }
        Ok(failed)
    }
}
