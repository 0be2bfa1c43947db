//! The compensation tool's write (issue 6): `ForceUnlockItem`'s event and its audit
//! record (`economy_kit::audit`) commit in ONE transaction; the record's UNIQUE
//! idempotency key (and the event's, UNIQUE per instance) make a retry a replay.

use economy_kit::audit::{self, AuditDraft, AuditError, AuditPage, AuditQuery, AuditRecord};

use super::ItemStore;
use super::write::{Applied, MAX_ATTEMPTS, write_transition};
use crate::domain::ItemError;
use crate::domain::compensation::item_state;
use crate::domain::transition::TransitionPlan;

impl From<AuditError> for ItemError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::KeyReused(key) => Self::IdempotencyKeyReused(key),
            AuditError::Storage(error) => error.into(),
        }
    }
}

impl ItemStore {
    /// Applies an audited transition (`ForceUnlockItem`) exactly once per key: the
    /// instance's event and the audit record of `draft` (before / after = `item_state`)
    /// in one transaction.
    ///
    /// Same key + same fix -> the instance now, the original event and record,
    /// `replayed`. Same key for another fix -> `IDEMPOTENCY_KEY_REUSED`. The state
    /// machine's refusal (`ITEM_NOT_LOCKED`), `ITEM_NOT_FOUND`, or `ITEM_CONTENDED` after
    /// repeated lost races; nothing is written then.
    pub async fn audited_transition(
        &self,
        plan: &TransitionPlan,
        draft: &AuditDraft,
        now: i64,
    ) -> Result<(Applied, AuditRecord), ItemError> {
        for _ in 0..MAX_ATTEMPTS {
            if let Some(replayed) = self.audited_replay(plan, draft).await? {
                return Ok(replayed);
            }
            let mut writer = self.db.writer().await?;
            let mut tx = writer.begin().await?;
            let outcome = match write_transition(&mut tx, self.backend(), plan, now).await {
                Ok(outcome) => outcome,
                // A refusal may stem from a concurrent retry of this very key: its outcome wins.
                Err(error) => {
                    drop(tx);
                    return self.audited_replay(plan, draft).await?.ok_or(error);
                }
            };
            let Some((before, applied)) = outcome else {
                continue;
            };
            let record = draft.record(item_state(&before), item_state(&applied.item), now);
            if audit::insert(&mut tx, &record).await? {
                tx.commit().await?;
                self.appended.committed();
                return Ok((applied, record));
            }
        }
        Err(ItemError::Contended(plan.item.to_string()))
    }

    /// The outcome `draft`'s key already recorded, if any (`IDEMPOTENCY_KEY_REUSED` when
    /// the key recorded another fix, or another change of this instance).
    async fn audited_replay(
        &self,
        plan: &TransitionPlan,
        draft: &AuditDraft,
    ) -> Result<Option<(Applied, AuditRecord)>, ItemError> {
        let Some(record) = audit::prior(self.db.pool(), draft).await? else {
            // A change of this instance under the key without a record is another change.
            return match self.replay(plan.item.as_str(), &plan.meta).await? {
                Some(_) => Err(ItemError::IdempotencyKeyReused(draft.idempotency_key.clone())),
                None => Ok(None),
            };
        };
        let applied = self
            .replay(plan.item.as_str(), &plan.meta)
            .await?
            .ok_or_else(|| ItemError::Storage("audited event vanished".into()))?;
        Ok(Some((applied, record)))
    }

    /// One page of the items service's audit records, newest first.
    pub async fn audit_records(&self, query: &AuditQuery) -> Result<AuditPage, ItemError> {
        Ok(audit::list(self.db.pool(), query).await?)
    }
}
