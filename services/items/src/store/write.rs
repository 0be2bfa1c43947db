//! The write path (docs/items.md, "Events"). A grant inserts the instance (its grant key
//! UNIQUE) and its GRANTED event in one transaction. A change reads the instance, runs
//! the state machine, writes the result with one compare-and-set UPDATE on the version it
//! read, and appends the event (UNIQUE per instance and key) in the same transaction.
//! A lost race re-reads: a concurrent retry of the same key then replays, any other
//! change is judged against the new state; a refusal is re-checked against the key, so a
//! retry that lost to its own twin returns the twin's outcome.

use economy_kit::db::{Backend, is_unique_violation};
use sqlx::{Any, Transaction};

use super::ItemStore;
use super::read::{event_by_key, item_with_flag};
use super::rows::metadata_json;
use super::watch::position_sql;
use crate::domain::ItemError;
use crate::domain::event::{Event, EventMeta, EventType};
use crate::domain::grant::GrantPlan;
use crate::domain::ids::ItemId;
use crate::domain::item::{Item, ItemState, ItemStatus};
use crate::domain::transition::{Change, TransitionPlan, apply};

type Tx<'c> = Transaction<'c, Any>;

/// How often a change re-reads after losing a compare-and-set race before giving up with
/// `ITEM_CONTENDED`. Every lost race means another change committed, so the state moved.
pub(super) const MAX_ATTEMPTS: usize = 8;

/// The outcome of a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The instance after the write (its current state when replayed).
    pub item: Item,
    /// The event written now, or the original one.
    pub event: Event,
    /// True when the key had already been applied with the same fingerprint.
    pub replayed: bool,
}

impl ItemStore {
    /// Grants a new instance exactly once per grant key.
    ///
    /// Same key + same fingerprint -> the original instance, `replayed`. Same key + other
    /// fingerprint -> `IDEMPOTENCY_KEY_REUSED`. `TEMPLATE_NOT_FOUND`; an explicit expiry
    /// not after `now` -> `NotInFuture("expires_at")`.
    pub async fn grant(&self, plan: &GrantPlan, now: i64) -> Result<Applied, ItemError> {
        if let Some(applied) = self.replay_grant(&plan.meta).await? {
            return Ok(applied);
        }
        match self.grant_once(plan, now).await {
            Ok(Some(applied)) => Ok(applied),
            // A concurrent grant committed the same key first: the database decided.
            Ok(None) => {
                self.replay_grant(&plan.meta).await?.ok_or_else(|| ItemError::Storage("grant key vanished".into()))
            }
            Err(error) => self.replay_grant(&plan.meta).await?.ok_or(error),
        }
    }

    async fn replay_grant(&self, meta: &EventMeta) -> Result<Option<Applied>, ItemError> {
        match self.granted_by(meta.key.as_str()).await? {
            Some(item_id) => self.replay(&item_id, meta).await,
            None => Ok(None),
        }
    }

    /// `Ok(None)` when the grant key was taken by a concurrent grant.
    async fn grant_once(&self, plan: &GrantPlan, now: i64) -> Result<Option<Applied>, ItemError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let template = &plan.grant.template;
        let validity: Option<(i64,)> =
            sqlx::query_as("SELECT default_validity_secs FROM item_templates WHERE code = $1")
                .bind(template.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let (validity,) = validity.ok_or_else(|| ItemError::TemplateNotFound(template.to_string()))?;
        let expires_at = plan.grant.expiry(validity, now)?;
        let metadata = metadata_json(&plan.grant.metadata)?;
        match insert_item(&mut tx, plan, &metadata, expires_at, now).await {
            Err(error) if is_unique_violation(&error) => return Ok(None),
            other => other?,
        }
        let item = Item {
            id: plan.item_id.clone(),
            template: template.clone(),
            owner: plan.grant.owner,
            state: ItemState::Available,
            expires_at,
            metadata: plan.grant.metadata.clone(),
            metadata_hash: plan.metadata_hash.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        let change = Change { state: item.state.clone(), owner: item.owner, kind: EventType::Granted, holder: None };
        let event = new_event(&item, None, &change, &plan.meta, now);
        insert_event(&mut tx, self.backend(), &event, &plan.meta.fingerprint).await?;
        let committed = tx.commit().await;
        writer.finish(committed)?;
        self.appended.committed();
        Ok(Some(Applied { item, event, replayed: false }))
    }

    /// Applies one change exactly once per (instance, key).
    ///
    /// Same key + same fingerprint on the instance -> its current state and the original
    /// event, `replayed`. Same key + other fingerprint -> `IDEMPOTENCY_KEY_REUSED`.
    /// `ITEM_NOT_FOUND`, or the state machine's refusal (nothing written); `ITEM_CONTENDED`
    /// after `MAX_ATTEMPTS` lost races.
    pub async fn transition(&self, plan: &TransitionPlan, now: i64) -> Result<Applied, ItemError> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(applied) = self.replay(plan.item.as_str(), &plan.meta).await? {
                return Ok(applied);
            }
            match self.transition_once(plan, now).await {
                Ok(Some(applied)) => return Ok(applied),
                Ok(None) => {}
                // A refusal may stem from a concurrent retry of this very key: its outcome wins.
                Err(error) => return self.replay(plan.item.as_str(), &plan.meta).await?.ok_or(error),
            }
        }
        Err(ItemError::Contended(plan.item.to_string()))
    }

    /// The recorded outcome of `meta.key` on `item_id`, if any.
    pub(super) async fn replay(&self, item_id: &str, meta: &EventMeta) -> Result<Option<Applied>, ItemError> {
        let Some((event, fingerprint)) = event_by_key(self.db.pool(), item_id, meta.key.as_str()).await? else {
            return Ok(None);
        };
        if fingerprint != meta.fingerprint {
            return Err(ItemError::IdempotencyKeyReused(meta.key.as_str().to_owned()));
        }
        let item = self.item(item_id).await?.ok_or_else(|| ItemError::ItemNotFound(item_id.to_owned()))?;
        Ok(Some(Applied { item, event, replayed: true }))
    }

    /// `Ok(None)` when a concurrent change won the compare-and-set (or the key).
    async fn transition_once(&self, plan: &TransitionPlan, now: i64) -> Result<Option<Applied>, ItemError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let Some((_, applied)) = write_transition(&mut tx, self.backend(), plan, now).await? else {
            return Ok(None);
        };
        let committed = tx.commit().await;
        writer.finish(committed)?;
        self.appended.committed();
        Ok(Some(applied))
    }
}

/// Runs `plan` inside `tx` (the caller commits, then signals `Appended`): reads the
/// instance, applies the state machine, compare-and-sets the row, appends the event.
/// Returns the instance as read and the outcome; `Ok(None)` when a concurrent change won
/// the compare-and-set (or the key).
pub(super) async fn write_transition(
    tx: &mut Tx<'_>,
    backend: Backend,
    plan: &TransitionPlan,
    now: i64,
) -> Result<Option<(Item, Applied)>, ItemError> {
    let (item, consumable) = item_with_flag(&mut **tx, plan.item.as_str())
        .await?
        .ok_or_else(|| ItemError::ItemNotFound(plan.item.to_string()))?;
    let change = apply(&item, &plan.command, now, consumable)?;
    if !compare_and_set(tx, &item, &change, now).await? {
        return Ok(None);
    }
    let updated = Item {
        owner: change.owner,
        state: change.state.clone(),
        version: item.version + 1,
        updated_at: now,
        ..item.clone()
    };
    let event = new_event(&updated, Some(&item), &change, &plan.meta, now);
    match insert_event(tx, backend, &event, &plan.meta.fingerprint).await {
        Err(error) if is_unique_violation(&error) => return Ok(None),
        other => other?,
    }
    Ok(Some((item, Applied { item: updated, event, replayed: false })))
}

/// The event of `change`, which moved `before` (`None` for a grant) to `after`.
fn new_event(after: &Item, before: Option<&Item>, change: &Change, meta: &EventMeta, now: i64) -> Event {
    Event {
        id: ItemId::generate().to_string(),
        item_id: after.id.to_string(),
        kind: change.kind,
        version: after.version,
        actor: meta.actor.clone(),
        from_owner: before.map(|item| item.owner),
        to_owner: change.owner,
        holder: change.holder.as_ref().map(ToString::to_string),
        business_type: meta.business_type.clone(),
        idempotency_key: meta.key.as_str().to_owned(),
        reason: meta.reason.clone(),
        correlation_id: meta.correlation_id.as_str().to_owned(),
        status: change.state.status(),
        created_at: now,
    }
}

async fn insert_item(
    tx: &mut Tx<'_>,
    plan: &GrantPlan,
    metadata: &str,
    expires_at: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO item_instances (id, grant_key, template_code, owner_user_id, status, expires_at, metadata, \
         metadata_hash, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $9)",
    )
    .bind(plan.item_id.as_str())
    .bind(plan.meta.key.as_str())
    .bind(plan.grant.template.as_str())
    .bind(plan.grant.owner.get())
    .bind(ItemStatus::Available.as_str())
    .bind(expires_at)
    .bind(metadata)
    .bind(&plan.metadata_hash)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// Writes `change` over `item` only if the row still has the version and status read.
async fn compare_and_set(tx: &mut Tx<'_>, item: &Item, change: &Change, now: i64) -> Result<bool, ItemError> {
    let lock = change.state.lock();
    let updated = sqlx::query(
        "UPDATE item_instances SET owner_user_id = $1, status = $2, lock_holder = $3, locked_at = $4, \
         lock_expires_at = $5, version = version + 1, updated_at = $6 \
         WHERE id = $7 AND version = $8 AND status = $9",
    )
    .bind(change.owner.get())
    .bind(change.state.status().as_str())
    .bind(lock.map(|lock| lock.holder.to_string()))
    .bind(lock.map(|lock| lock.locked_at))
    .bind(lock.and_then(|lock| lock.expires_at))
    .bind(now)
    .bind(item.id.as_str())
    .bind(item.version)
    .bind(item.state.status().as_str())
    .execute(&mut **tx)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Appends `event` at the next stream position (docs/streams.md).
pub(super) async fn insert_event(
    tx: &mut Tx<'_>,
    backend: Backend,
    event: &Event,
    fingerprint: &str,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO item_events (id, item_instance_id, version, event_type, idempotency_key, fingerprint, actor, \
         from_owner_user_id, to_owner_user_id, holder, business_type, reason, status, created_at, correlation_id, \
         stream_position) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, {})",
        position_sql(backend)
    );
    sqlx::query(&sql)
        .bind(&event.id)
        .bind(&event.item_id)
        .bind(event.version)
        .bind(event.kind.as_str())
        .bind(&event.idempotency_key)
        .bind(fingerprint)
        .bind(&event.actor)
        .bind(event.from_owner.map(|owner| owner.get()))
        .bind(event.to_owner.get())
        .bind(event.holder.clone())
        .bind(&event.business_type)
        .bind(&event.reason)
        .bind(event.status.as_str())
        .bind(event.created_at)
        .bind(&event.correlation_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
