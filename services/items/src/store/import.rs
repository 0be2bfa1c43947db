//! Writing imported instances (docs/import.md, "Item instances"): one transaction per
//! row inserts the instance in its legacy status (its grant key `import:<external id>`
//! UNIQUE) and its IMPORTED event. The database judges a duplicate; the stored event's
//! fingerprint tells the same row from another one.

use economy_kit::db::is_unique_violation;

use super::ItemStore;
use super::read::event_by_key;
use super::rows::metadata_json;
use super::write::insert_event;
use crate::domain::ItemError;
use crate::domain::event::{Event, EventMeta, EventType};
use crate::domain::ids::ItemId;
use crate::domain::import::ImportPlan;

/// What importing one row did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// Written now: the new instance's id.
    Created(String),
    /// The same row was imported before: its instance's id.
    Unchanged(String),
    /// Another row was imported under this external id: that instance's id.
    Conflict(String),
}

impl ItemStore {
    /// Imports one row exactly once per external id. `TEMPLATE_NOT_FOUND` when its
    /// template is not defined (nothing written).
    pub async fn import_item(&self, plan: &ImportPlan, now: i64) -> Result<Imported, ItemError> {
        if let Some(found) = self.imported_as(&plan.meta).await? {
            return Ok(found);
        }
        if self.import_once(plan, now).await? {
            return Ok(Imported::Created(plan.item_id.to_string()));
        }
        // A concurrent import of the same external id committed first.
        self.imported_as(&plan.meta).await?.ok_or_else(|| ItemError::Storage("import key vanished".into()))
    }

    /// The earlier import of `meta.key`, if any, compared by fingerprint.
    async fn imported_as(&self, meta: &EventMeta) -> Result<Option<Imported>, ItemError> {
        let Some(item_id) = self.granted_by(meta.key.as_str()).await? else {
            return Ok(None);
        };
        let event = event_by_key(self.db.pool(), &item_id, meta.key.as_str()).await?;
        Ok(Some(match event {
            Some((_, fingerprint)) if fingerprint == meta.fingerprint => Imported::Unchanged(item_id),
            _ => Imported::Conflict(item_id),
        }))
    }

    /// `Ok(false)` when the grant key was taken by a concurrent import.
    async fn import_once(&self, plan: &ImportPlan, now: i64) -> Result<bool, ItemError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let template = plan.row.template.as_str();
        let defined: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM item_templates WHERE code = $1")
            .bind(template)
            .fetch_optional(&mut *tx)
            .await?;
        if defined.is_none() {
            return Err(ItemError::TemplateNotFound(template.to_owned()));
        }
        let metadata = metadata_json(&plan.row.metadata)?;
        match insert_imported(&mut tx, plan, &metadata, now).await {
            Err(error) if is_unique_violation(&error) => return Ok(false),
            other => other?,
        }
        insert_event(&mut tx, self.backend(), &imported_event(plan, now), &plan.meta.fingerprint).await?;
        let committed = tx.commit().await;
        writer.finish(committed)?;
        self.appended.committed();
        Ok(true)
    }
}

async fn insert_imported(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    plan: &ImportPlan,
    metadata: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO item_instances (id, grant_key, template_code, owner_user_id, status, expires_at, metadata, \
         metadata_hash, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10)",
    )
    .bind(plan.item_id.as_str())
    .bind(plan.meta.key.as_str())
    .bind(plan.row.template.as_str())
    .bind(plan.row.owner.get())
    .bind(plan.state.status().as_str())
    .bind(plan.row.expires_at)
    .bind(metadata)
    .bind(&plan.metadata_hash)
    .bind(plan.row.granted_at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map(|_| ())
}

/// The IMPORTED event: version 1, the legacy status, no previous owner.
fn imported_event(plan: &ImportPlan, now: i64) -> Event {
    Event {
        id: ItemId::generate().to_string(),
        item_id: plan.item_id.to_string(),
        kind: EventType::Imported,
        version: 1,
        actor: plan.meta.actor.clone(),
        from_owner: None,
        to_owner: plan.row.owner,
        holder: None,
        business_type: plan.meta.business_type.clone(),
        idempotency_key: plan.meta.key.as_str().to_owned(),
        reason: plan.meta.reason.clone(),
        correlation_id: String::new(),
        status: plan.state.status(),
        created_at: now,
    }
}
