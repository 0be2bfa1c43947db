//! The state machine (docs/items.md, "Instances and their state machine"):
//!
//! ```text
//! available --lock(holder)--> locked(holder) --unlock--> available
//!                                            --transfer(to)--> available, owned by `to`
//!                                            --consume--> used
//! available --consume (owner, consumable template)--> used
//! available --expire (job, past expires_at)--> expired
//! available --revoke (admin)--> revoked
//! locked --release (job, past lock_expires_at)--> available
//! locked --force unlock (admin compensation tool, any holder)--> available
//! ```
//!
//! Only a lock's holder may unlock, transfer or consume a locked instance (an admin's
//! `ForceUnlockItem`, audited, is the one exception). A lock with an expiry is expired from
//! that instant, whenever the lock-expiry job runs: its holder may then only unlock (what
//! the job would do), not transfer or consume (`ITEM_LOCK_EXPIRED`). Every other
//! transition fails with the reason of its `ItemError` and changes nothing. `apply` is
//! pure: the store runs it on the row it read and writes the result with one
//! compare-and-set on the instance's version.

use serde::Serialize;

use super::ItemError;
use super::event::{EventMeta, EventType};
use super::ids::{Holder, IdempotencyKey, ItemId, UserId};
use super::item::{Item, ItemState, Lock};

/// A change requested on an existing instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Command {
    /// Lock an available instance for `holder`.
    Lock {
        /// The holder.
        holder: Holder,
        /// When the lock-expiry job releases the lock (must be after now).
        lock_expires_at: Option<i64>,
        /// Refuse with `ITEM_OWNER_MISMATCH` unless this user owns the instance.
        expected_owner: Option<UserId>,
    },
    /// Release the holder's lock.
    Unlock {
        /// The holder.
        holder: Holder,
    },
    /// Give the locked instance to `to` (available again).
    Transfer {
        /// The holder.
        holder: Holder,
        /// The new owner.
        to: UserId,
    },
    /// Mark the instance used: a locked one by its holder, or an available consumable one
    /// by its owner (`holder` = `None`).
    Consume {
        /// The holder, for a locked instance.
        holder: Option<Holder>,
        /// For an owner's consume by a plain user: that user, who must own the instance.
        acting_user: Option<UserId>,
    },
    /// Withdraw an available instance (admin).
    Revoke,
    /// Expire an available instance past its expiry (job).
    Expire,
    /// Release a lock past its expiry (job); `locked_version` is the version the job saw,
    /// so the release applies to that lock only.
    ReleaseExpiredLock {
        /// Version of the instance when the job selected it.
        locked_version: i64,
    },
    /// Release a lock whatever its holder (an admin's compensation tool for a lock whose
    /// holder is gone; `ITEM_NOT_LOCKED` when not locked).
    ForceUnlock,
}

impl Command {
    /// Operation name used in fingerprints.
    fn operation(&self) -> &'static str {
        match self {
            Self::Lock { .. } => "LOCK_ITEM",
            Self::Unlock { .. } => "UNLOCK_ITEM",
            Self::Transfer { .. } => "TRANSFER_ITEM",
            Self::Consume { .. } => "CONSUME_ITEM",
            Self::Revoke => "REVOKE_ITEM",
            Self::Expire => "EXPIRE_ITEM",
            Self::ReleaseExpiredLock { .. } => "RELEASE_EXPIRED_LOCK",
            Self::ForceUnlock => "FORCE_UNLOCK_ITEM",
        }
    }

    /// Business type recorded when the request names none.
    pub fn default_business_type(&self) -> &'static str {
        match self {
            Self::Lock { .. } => "ITEM_LOCK",
            Self::Unlock { .. } => "ITEM_UNLOCK",
            Self::Transfer { .. } => "ITEM_TRANSFER",
            Self::Consume { .. } => "ITEM_USE",
            Self::Revoke => "ITEM_REVOKE",
            Self::Expire => "ITEM_EXPIRE",
            Self::ReleaseExpiredLock { .. } => "ITEM_LOCK_EXPIRE",
            Self::ForceUnlock => "ADMIN_FORCE_UNLOCK",
        }
    }

    /// The plan: the command on `item` with its event meta (the fingerprint covers the
    /// instance, the command, the business type and the reason).
    pub fn plan(
        self,
        item: ItemId,
        key: IdempotencyKey,
        actor: &str,
        business_type: String,
        reason: String,
    ) -> TransitionPlan {
        let meta = EventMeta::new(self.operation(), key, actor, &(&item, &self), business_type, reason);
        TransitionPlan { item, command: self, meta }
    }
}

/// Everything one change writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionPlan {
    /// The instance.
    pub item: ItemId,
    /// The change.
    pub command: Command,
    /// The event's meta.
    pub meta: EventMeta,
}

/// The outcome of a legal transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The new state.
    pub state: ItemState,
    /// The owner after the change.
    pub owner: UserId,
    /// The event to record.
    pub kind: EventType,
    /// The holder involved.
    pub holder: Option<Holder>,
}

/// Applies `command` to `item` at `now`; `consumable` is the template's flag. Errors
/// name the reason the transition is illegal; nothing is changed then.
pub fn apply(item: &Item, command: &Command, now: i64, consumable: bool) -> Result<Change, ItemError> {
    match command {
        Command::Lock { holder, lock_expires_at, expected_owner } => {
            lock(item, holder, *lock_expires_at, *expected_owner, now)
        }
        Command::Unlock { holder } => {
            held_by(item, holder)?;
            Ok(change(item, ItemState::Available, EventType::Unlocked, Some(holder)))
        }
        Command::Transfer { holder, to } => transfer(item, holder, *to, now),
        Command::Consume { holder: Some(holder), .. } => {
            held_live(item, holder, now)?;
            Ok(change(item, ItemState::Used, EventType::Used, Some(holder)))
        }
        Command::Consume { holder: None, acting_user } => consume_by_owner(item, *acting_user, now, consumable),
        Command::Revoke => {
            available(item, now)?;
            Ok(change(item, ItemState::Revoked, EventType::Revoked, None))
        }
        Command::Expire => {
            available(item, now)?;
            if !item.is_past_expiry(now) {
                return Err(ItemError::NotDue(item.id.to_string()));
            }
            Ok(change(item, ItemState::Expired, EventType::Expired, None))
        }
        Command::ReleaseExpiredLock { locked_version } => release_expired_lock(item, *locked_version, now),
        Command::ForceUnlock => match &item.state {
            ItemState::Locked(lock) => Ok(change(item, ItemState::Available, EventType::Unlocked, Some(&lock.holder))),
            state => Err(ItemError::NotLocked { item_id: item.id.to_string(), status: state.status() }),
        },
    }
}

fn change(item: &Item, state: ItemState, kind: EventType, holder: Option<&Holder>) -> Change {
    Change { state, owner: item.owner, kind, holder: holder.cloned() }
}

/// `ITEM_NOT_AVAILABLE` unless available at `now`. A lock at or past its expiry counts as
/// released from that instant, whatever the lock-expiry job's period: the change that
/// follows supersedes it (its event names the new state and holder).
fn available(item: &Item, now: i64) -> Result<(), ItemError> {
    match &item.state {
        ItemState::Available => Ok(()),
        ItemState::Locked(lock) if lock.is_lapsed(now) => Ok(()),
        state => Err(ItemError::NotAvailable { item_id: item.id.to_string(), status: state.status() }),
    }
}

/// The lock, when `holder` holds it: `ITEM_LOCKED_BY_OTHER` for another holder,
/// `ITEM_NOT_LOCKED` when not locked.
fn held_by<'a>(item: &'a Item, holder: &Holder) -> Result<&'a Lock, ItemError> {
    match &item.state {
        ItemState::Locked(lock) if lock.holder == *holder => Ok(lock),
        ItemState::Locked(_) => Err(ItemError::LockedByOther(item.id.to_string())),
        state => Err(ItemError::NotLocked { item_id: item.id.to_string(), status: state.status() }),
    }
}

/// The lock, when `holder` holds it and it has not expired at `now`: as [`held_by`], and
/// `ITEM_LOCK_EXPIRED` at or past its expiry.
fn held_live<'a>(item: &'a Item, holder: &Holder, now: i64) -> Result<&'a Lock, ItemError> {
    let lock = held_by(item, holder)?;
    if lock.is_lapsed(now) {
        return Err(ItemError::LockExpired(item.id.to_string()));
    }
    Ok(lock)
}

fn not_expired(item: &Item, now: i64) -> Result<(), ItemError> {
    if item.is_past_expiry(now) { Err(ItemError::Expired(item.id.to_string())) } else { Ok(()) }
}

fn lock(
    item: &Item,
    holder: &Holder,
    lock_expires_at: Option<i64>,
    expected_owner: Option<UserId>,
    now: i64,
) -> Result<Change, ItemError> {
    if lock_expires_at.is_some_and(|at| at <= now) {
        return Err(ItemError::NotInFuture { field: "lock_expires_at" });
    }
    if let ItemState::Locked(existing) = &item.state
        && existing.holder != *holder
        && !existing.is_lapsed(now)
    {
        return Err(ItemError::LockedByOther(item.id.to_string()));
    }
    available(item, now)?;
    if expected_owner.is_some_and(|owner| owner != item.owner) {
        return Err(ItemError::OwnerMismatch(item.id.to_string()));
    }
    not_expired(item, now)?;
    let state = ItemState::Locked(Lock { holder: holder.clone(), locked_at: now, expires_at: lock_expires_at });
    Ok(change(item, state, EventType::Locked, Some(holder)))
}

/// The new owner must differ, and an instance past its expiry is not handed over (the
/// market refunds the buyer instead).
fn transfer(item: &Item, holder: &Holder, to: UserId, now: i64) -> Result<Change, ItemError> {
    held_live(item, holder, now)?;
    if to == item.owner {
        return Err(ItemError::SameOwner(item.id.to_string()));
    }
    not_expired(item, now)?;
    Ok(Change { state: ItemState::Available, owner: to, kind: EventType::Transferred, holder: Some(holder.clone()) })
}

fn consume_by_owner(item: &Item, acting_user: Option<UserId>, now: i64, consumable: bool) -> Result<Change, ItemError> {
    if acting_user.is_some_and(|user| user != item.owner) {
        return Err(ItemError::PermissionDenied("only the owner may consume this item".into()));
    }
    available(item, now)?;
    if !consumable {
        return Err(ItemError::NotConsumable { item_id: item.id.to_string(), template: item.template.to_string() });
    }
    not_expired(item, now)?;
    Ok(change(item, ItemState::Used, EventType::Used, None))
}

fn release_expired_lock(item: &Item, locked_version: i64, now: i64) -> Result<Change, ItemError> {
    let ItemState::Locked(lock) = &item.state else {
        return Err(ItemError::NotLocked { item_id: item.id.to_string(), status: item.state.status() });
    };
    let due = lock.expires_at.is_some_and(|at| at <= now);
    if !due || item.version != locked_version {
        return Err(ItemError::NotDue(item.id.to_string()));
    }
    Ok(change(item, ItemState::Available, EventType::Unlocked, Some(&lock.holder)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::ids::TemplateCode;
    use crate::domain::item::ItemStatus;

    const NOW: i64 = 1_000_000;

    fn user(id: i64) -> UserId {
        UserId::parse(id).expect("user")
    }

    fn holder(value: &str) -> Holder {
        Holder::parse(value).expect("holder")
    }

    fn item(state: ItemState) -> Item {
        Item {
            id: ItemId::generate(),
            template: TemplateCode::parse("voucher").expect("code"),
            owner: user(1),
            state,
            expires_at: None,
            metadata: BTreeMap::new(),
            metadata_hash: String::new(),
            version: 3,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn locked_by(value: &str, expires_at: Option<i64>) -> ItemState {
        ItemState::Locked(Lock { holder: holder(value), locked_at: 1, expires_at })
    }

    fn lock_cmd(value: &str) -> Command {
        Command::Lock { holder: holder(value), lock_expires_at: None, expected_owner: None }
    }

    fn reason(result: Result<Change, ItemError>) -> ItemError {
        result.expect_err("illegal transition")
    }

    fn terminal_states() -> [ItemState; 3] {
        [ItemState::Used, ItemState::Expired, ItemState::Revoked]
    }

    #[test]
    fn lock_takes_an_available_item() -> Result<(), ItemError> {
        let command = Command::Lock {
            holder: holder("market:listing:1"),
            lock_expires_at: Some(NOW + 10),
            expected_owner: Some(user(1)),
        };
        let change = apply(&item(ItemState::Available), &command, NOW, false)?;
        assert_eq!(change.state, locked_by("market:listing:1", Some(NOW + 10)).clone_with_locked_at(NOW));
        assert_eq!((change.kind, change.owner), (EventType::Locked, user(1)));
        Ok(())
    }

    #[test]
    fn lock_refusals() {
        let available = item(ItemState::Available);
        let locked = item(locked_by("market:listing:1", None));
        assert_eq!(
            reason(apply(&locked, &lock_cmd("redemption:9"), NOW, false)),
            ItemError::LockedByOther(locked.id.to_string())
        );
        assert_eq!(
            reason(apply(&locked, &lock_cmd("market:listing:1"), NOW, false)),
            ItemError::NotAvailable { item_id: locked.id.to_string(), status: ItemStatus::Locked }
        );
        for state in terminal_states() {
            let terminal = item(state.clone());
            assert_eq!(
                reason(apply(&terminal, &lock_cmd("market:listing:1"), NOW, false)),
                ItemError::NotAvailable { item_id: terminal.id.to_string(), status: state.status() }
            );
        }
        let other_owner = Command::Lock { holder: holder("m:1"), lock_expires_at: None, expected_owner: Some(user(2)) };
        assert_eq!(
            reason(apply(&available, &other_owner, NOW, false)),
            ItemError::OwnerMismatch(available.id.to_string())
        );
        let past = Command::Lock { holder: holder("m:1"), lock_expires_at: Some(NOW), expected_owner: None };
        assert_eq!(reason(apply(&available, &past, NOW, false)), ItemError::NotInFuture { field: "lock_expires_at" });
        let expired = Item { expires_at: Some(NOW), ..available };
        assert_eq!(reason(apply(&expired, &lock_cmd("m:1"), NOW, false)), ItemError::Expired(expired.id.to_string()));
    }

    #[test]
    fn only_the_holder_unlocks_transfers_or_consumes() -> Result<(), ItemError> {
        let locked = item(locked_by("market:listing:1", None));
        let mine = holder("market:listing:1");
        let theirs = holder("redemption:2");
        let commands = |holder: &Holder| {
            [
                Command::Unlock { holder: holder.clone() },
                Command::Transfer { holder: holder.clone(), to: user(2) },
                Command::Consume { holder: Some(holder.clone()), acting_user: None },
            ]
        };
        for command in commands(&theirs) {
            assert_eq!(reason(apply(&locked, &command, NOW, false)), ItemError::LockedByOther(locked.id.to_string()));
        }
        let [unlock, transfer, consume] = commands(&mine);
        let unlocked = apply(&locked, &unlock, NOW, false)?;
        assert_eq!(
            (unlocked.state, unlocked.kind, unlocked.owner),
            (ItemState::Available, EventType::Unlocked, user(1))
        );
        let transferred = apply(&locked, &transfer, NOW, false)?;
        assert_eq!((transferred.state, transferred.owner), (ItemState::Available, user(2)));
        assert_eq!(transferred.holder, Some(mine.clone()));
        let used = apply(&locked, &consume, NOW, false)?;
        assert_eq!((used.state, used.kind), (ItemState::Used, EventType::Used));
        Ok(())
    }

    #[test]
    fn holder_operations_need_a_lock() {
        let mine = holder("market:listing:1");
        for state in [ItemState::Available, ItemState::Used, ItemState::Expired, ItemState::Revoked] {
            let subject = item(state.clone());
            for command in [
                Command::Unlock { holder: mine.clone() },
                Command::Transfer { holder: mine.clone(), to: user(2) },
                Command::Consume { holder: Some(mine.clone()), acting_user: None },
            ] {
                assert_eq!(
                    reason(apply(&subject, &command, NOW, true)),
                    ItemError::NotLocked { item_id: subject.id.to_string(), status: state.status() }
                );
            }
        }
    }

    #[test]
    fn an_expired_lock_may_only_be_unlocked() -> Result<(), ItemError> {
        let mine = holder("m:1");
        let locked = item(locked_by("m:1", Some(NOW)));
        let transfer = Command::Transfer { holder: mine.clone(), to: user(2) };
        let consume = Command::Consume { holder: Some(mine.clone()), acting_user: None };
        for command in [&transfer, &consume] {
            assert!(apply(&locked, command, NOW - 1, false).is_ok(), "live until its expiry");
            for now in [NOW, NOW + 1] {
                assert_eq!(reason(apply(&locked, command, now, false)), ItemError::LockExpired(locked.id.to_string()));
            }
        }
        let unlocked = apply(&locked, &Command::Unlock { holder: mine }, NOW, false)?;
        assert_eq!((unlocked.state, unlocked.kind), (ItemState::Available, EventType::Unlocked));
        let theirs = Command::Transfer { holder: holder("m:2"), to: user(2) };
        assert_eq!(reason(apply(&locked, &theirs, NOW, false)), ItemError::LockedByOther(locked.id.to_string()));
        Ok(())
    }

    #[test]
    fn transfer_refusals() {
        let locked = item(locked_by("m:1", None));
        let to_self = Command::Transfer { holder: holder("m:1"), to: user(1) };
        assert_eq!(reason(apply(&locked, &to_self, NOW, false)), ItemError::SameOwner(locked.id.to_string()));
        let expired = Item { expires_at: Some(NOW - 1), ..locked };
        let transfer = Command::Transfer { holder: holder("m:1"), to: user(2) };
        assert_eq!(reason(apply(&expired, &transfer, NOW, false)), ItemError::Expired(expired.id.to_string()));
        // The holder's consume is honoured after expiry: the decision was made while valid.
        let consume = Command::Consume { holder: Some(holder("m:1")), acting_user: None };
        assert!(apply(&expired, &consume, NOW, false).is_ok());
    }

    #[test]
    fn owners_consume_available_consumable_items() -> Result<(), ItemError> {
        let available = item(ItemState::Available);
        let by_owner = Command::Consume { holder: None, acting_user: Some(user(1)) };
        assert_eq!(apply(&available, &by_owner, NOW, true)?.state, ItemState::Used);
        let by_admin = Command::Consume { holder: None, acting_user: None };
        assert_eq!(apply(&available, &by_admin, NOW, true)?.kind, EventType::Used);
        assert_eq!(
            reason(apply(&available, &by_owner, NOW, false)),
            ItemError::NotConsumable { item_id: available.id.to_string(), template: "voucher".into() }
        );
        let stranger = Command::Consume { holder: None, acting_user: Some(user(2)) };
        assert!(matches!(reason(apply(&available, &stranger, NOW, true)), ItemError::PermissionDenied(_)));
        let locked = item(locked_by("m:1", None));
        assert_eq!(
            reason(apply(&locked, &by_owner, NOW, true)),
            ItemError::NotAvailable { item_id: locked.id.to_string(), status: ItemStatus::Locked }
        );
        let expired = Item { expires_at: Some(NOW), ..available };
        assert_eq!(reason(apply(&expired, &by_owner, NOW, true)), ItemError::Expired(expired.id.to_string()));
        Ok(())
    }

    #[test]
    fn a_lapsed_lock_holds_nothing_for_anyone_else() -> Result<(), ItemError> {
        let lapsed = item(locked_by("m:1", Some(NOW)));
        let live = item(locked_by("m:1", Some(NOW + 1)));
        let relocked = apply(&lapsed, &lock_cmd("redemption:9"), NOW, false)?;
        assert_eq!(relocked.holder, Some(holder("redemption:9")));
        assert_eq!(
            reason(apply(&live, &lock_cmd("redemption:9"), NOW, false)),
            ItemError::LockedByOther(live.id.to_string())
        );
        assert_eq!(apply(&lapsed, &Command::Revoke, NOW, false)?.state, ItemState::Revoked);
        let due = Item { expires_at: Some(NOW), ..lapsed.clone() };
        assert_eq!(apply(&due, &Command::Expire, NOW, false)?.kind, EventType::Expired);
        let by_owner = Command::Consume { holder: None, acting_user: Some(lapsed.owner) };
        assert_eq!(apply(&lapsed, &by_owner, NOW, true)?.state, ItemState::Used);
        for command in [Command::Revoke, by_owner] {
            assert_eq!(
                reason(apply(&live, &command, NOW, true)),
                ItemError::NotAvailable { item_id: live.id.to_string(), status: ItemStatus::Locked }
            );
        }
        Ok(())
    }

    #[test]
    fn revoke_and_expire_need_an_available_item() -> Result<(), ItemError> {
        let available = item(ItemState::Available);
        assert_eq!(apply(&available, &Command::Revoke, NOW, false)?.state, ItemState::Revoked);
        assert_eq!(
            reason(apply(&available, &Command::Expire, NOW, false)),
            ItemError::NotDue(available.id.to_string())
        );
        let due = Item { expires_at: Some(NOW), ..available };
        assert_eq!(apply(&due, &Command::Expire, NOW, false)?.kind, EventType::Expired);
        let locked = Item { state: locked_by("m:1", None), ..due };
        for command in [Command::Revoke, Command::Expire] {
            assert_eq!(
                reason(apply(&locked, &command, NOW, false)),
                ItemError::NotAvailable { item_id: locked.id.to_string(), status: ItemStatus::Locked }
            );
        }
        Ok(())
    }

    #[test]
    fn expired_locks_are_released_once() -> Result<(), ItemError> {
        let locked = item(locked_by("m:1", Some(NOW)));
        let release = Command::ReleaseExpiredLock { locked_version: 3 };
        let released = apply(&locked, &release, NOW, false)?;
        assert_eq!((released.state, released.kind), (ItemState::Available, EventType::Unlocked));
        assert_eq!(released.holder, Some(holder("m:1")));
        assert_eq!(reason(apply(&locked, &release, NOW - 1, false)), ItemError::NotDue(locked.id.to_string()));
        let stale = Command::ReleaseExpiredLock { locked_version: 2 };
        assert_eq!(reason(apply(&locked, &stale, NOW, false)), ItemError::NotDue(locked.id.to_string()));
        let forever = item(locked_by("m:1", None));
        assert_eq!(reason(apply(&forever, &release, NOW, false)), ItemError::NotDue(forever.id.to_string()));
        let available = item(ItemState::Available);
        assert!(matches!(reason(apply(&available, &release, NOW, false)), ItemError::NotLocked { .. }));
        Ok(())
    }

    #[test]
    fn force_unlock_releases_any_holder() -> Result<(), ItemError> {
        let locked = item(locked_by("market:listing:gone", Some(NOW + 10)));
        let unlocked = apply(&locked, &Command::ForceUnlock, NOW, false)?;
        assert_eq!(
            (unlocked.state, unlocked.kind, unlocked.owner),
            (ItemState::Available, EventType::Unlocked, user(1))
        );
        assert_eq!(unlocked.holder, Some(holder("market:listing:gone")));
        for state in [ItemState::Available, ItemState::Used, ItemState::Expired, ItemState::Revoked] {
            assert!(matches!(
                reason(apply(&item(state), &Command::ForceUnlock, NOW, false)),
                ItemError::NotLocked { .. }
            ));
        }
        Ok(())
    }

    #[test]
    fn plans_fingerprint_item_and_command() {
        let key = || IdempotencyKey::parse("k").expect("key");
        let id = ItemId::generate();
        let plan = |command: Command, item: &ItemId| {
            command.plan(item.clone(), key(), "service:market", "ITEM_LOCK".into(), String::new()).meta.fingerprint
        };
        let base = plan(lock_cmd("m:1"), &id);
        assert_eq!(base, plan(lock_cmd("m:1"), &id));
        assert_ne!(base, plan(lock_cmd("m:2"), &id));
        assert_ne!(base, plan(lock_cmd("m:1"), &ItemId::generate()));
        assert_ne!(base, plan(Command::Unlock { holder: holder("m:1") }, &id));
    }

    impl ItemState {
        fn clone_with_locked_at(&self, locked_at: i64) -> Self {
            match self {
                Self::Locked(lock) => Self::Locked(Lock { locked_at, ..lock.clone() }),
                other => other.clone(),
            }
        }
    }
}
