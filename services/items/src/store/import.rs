//! Writing imported instances (docs/import.md, "Item instances"): each row is the instance
//! in its legacy status (its grant key `import:<external id>` UNIQUE) and its IMPORTED
//! event. The new rows of a call are inserted together, two statements in one
//! transaction (docs/import.md, "Speed"); a row already imported, of an undefined
//! template, or of a batch whose transaction failed (then nothing of it remains) is
//! written alone in a transaction of its own, which names its outcome. The database
//! judges a duplicate; the stored event's fingerprint tells the same row from another one.

use std::collections::HashSet;

use economy_kit::db::params::{Params, list, tuple};
use economy_kit::db::{Backend, is_unique_violation};
use futures_util::future::join_all;

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

/// Most rows one bulk insert carries: sixteen values an event row, within SQLite's
/// 32,766 and PostgreSQL's 65,535 bound values.
const MAX_BULK: usize = 500;

/// SQL of a new event's stream position in a bulk insert on PostgreSQL (its
/// transaction's id, as `watch::position_sql`); SQLite binds each event's own.
const POSTGRES_POSITION: &str = "pg_current_xact_id()::text::bigint";

impl ItemStore {
    /// Imports `plans` (each exactly once per external id), the new ones together; each
    /// answered as [`ItemStore::import_item`] answers it, in `plans` order. `Err` only when
    /// storage fails outside a row's own write.
    pub async fn import_items(
        &self,
        plans: &[ImportPlan],
        now: i64,
    ) -> Result<Vec<Result<Imported, ItemError>>, ItemError> {
        let mut created = vec![false; plans.len()];
        for (chunk_index, chunk) in plans.chunks(MAX_BULK).enumerate() {
            let fresh = self.fresh(chunk).await?;
            let together: Vec<&ImportPlan> = fresh.iter().map(|place| &chunk[*place]).collect();
            if together.len() > 1 && self.insert_together(&together, now).await.is_ok() {
                fresh.iter().for_each(|place| created[chunk_index * MAX_BULK + place] = true);
            }
        }
        if created.contains(&true) {
            self.appended.committed();
        }
        let answers = plans.iter().zip(created).map(|(plan, created)| async move {
            if created { Ok(Imported::Created(plan.item_id.to_string())) } else { self.import_item(plan, now).await }
        });
        Ok(join_all(answers).await)
    }

    /// The rows of `plans` a bulk insert may take: not imported before, of a defined
    /// template, their key once in the chunk.
    async fn fresh(&self, plans: &[ImportPlan]) -> Result<Vec<usize>, ItemError> {
        let mut params = Params::for_backend(self.backend());
        let keys = list(&params.push_each(plans.iter().map(|plan| plan.meta.key.as_str()))?);
        let templates: HashSet<&str> = plans.iter().map(|plan| plan.row.template.as_str()).collect();
        let templates = list(&params.push_each(templates)?);
        let sql = format!(
            "SELECT 'key', grant_key FROM item_instances WHERE grant_key IN ({keys}) \
             UNION ALL SELECT 'template', code FROM item_templates WHERE code IN ({templates})"
        );
        let rows: Vec<(String, String)> =
            sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
        let (taken, defined): (Vec<_>, Vec<_>) = rows.into_iter().partition(|(kind, _)| kind == "key");
        let taken: HashSet<String> = taken.into_iter().map(|(_, key)| key).collect();
        let defined: HashSet<String> = defined.into_iter().map(|(_, code)| code).collect();
        let mut seen = HashSet::new();
        Ok((0..plans.len())
            .filter(|place| {
                let plan = &plans[*place];
                !taken.contains(plan.meta.key.as_str()) && defined.contains(plan.row.template.as_str())
            })
            .filter(|place| seen.insert(plans[*place].meta.key.as_str()))
            .collect())
    }

    /// Inserts the instances and events of `plans` in one transaction; on any error
    /// nothing of them remains.
    async fn insert_together(&self, plans: &[&ImportPlan], now: i64) -> Result<(), ItemError> {
        let metadata: Vec<String> =
            plans.iter().map(|plan| metadata_json(&plan.row.metadata)).collect::<Result<_, _>>()?;
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let inserted = insert_rows(&mut tx, self.backend(), plans, &metadata, now).await;
        let outcome = match inserted {
            Ok(()) => tx.commit().await,
            Err(error) => {
                let _rolled_back = tx.rollback().await;
                Err(error)
            }
        };
        writer.finish(outcome)?;
        Ok(())
    }

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

/// The bulk form of [`insert_imported`] and `insert_event`: one INSERT of every instance,
/// one of every IMPORTED event (on SQLite numbered after the latest stream position, read
/// under the writer's lock).
async fn insert_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    plans: &[&ImportPlan],
    metadata: &[String],
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut params = Params::for_backend(backend);
    let mut rows = Vec::with_capacity(plans.len());
    for (plan, metadata) in plans.iter().zip(metadata) {
        rows.push(tuple(&[
            params.push(plan.item_id.as_str())?,
            params.push(plan.meta.key.as_str())?,
            params.push(plan.row.template.as_str())?,
            params.push(plan.row.owner.get())?,
            params.push(plan.state.status().as_str())?,
            params.push(plan.row.expires_at)?,
            params.push(metadata.as_str())?,
            params.push(plan.metadata_hash.as_str())?,
            params.push(1_i64)?,
            params.push(plan.row.granted_at)?,
            params.push(now)?,
        ]));
    }
    let sql = format!(
        "INSERT INTO item_instances (id, grant_key, template_code, owner_user_id, status, expires_at, metadata, \
         metadata_hash, version, created_at, updated_at) VALUES {}",
        rows.join(", ")
    );
    sqlx::query_with(&sql, params.into_arguments()).execute(&mut **tx).await?;
    let first_position = match backend {
        Backend::Sqlite => {
            let (latest,): (i64,) = sqlx::query_as("SELECT COALESCE(MAX(stream_position), 0) FROM item_events")
                .fetch_one(&mut **tx)
                .await?;
            Some(latest + 1)
        }
        Backend::Postgres => None,
    };
    insert_events(tx, backend, plans, first_position, now).await
}

/// The IMPORTED events of `plans`, positions from `first_position` (SQLite) or the
/// transaction's id (PostgreSQL).
async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    plans: &[&ImportPlan],
    first_position: Option<i64>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let events: Vec<Event> = plans.iter().map(|plan| imported_event(plan, now)).collect();
    let mut params = Params::for_backend(backend);
    let mut rows = Vec::with_capacity(plans.len());
    for (offset, (event, plan)) in (0_i64..).zip(events.iter().zip(plans)) {
        let mut values = vec![
            params.push(event.id.as_str())?,
            params.push(event.item_id.as_str())?,
            params.push(event.version)?,
            params.push(event.kind.as_str())?,
            params.push(event.idempotency_key.as_str())?,
            params.push(plan.meta.fingerprint.as_str())?,
            params.push(event.actor.as_str())?,
            params.push(event.from_owner.map(|owner| owner.get()))?,
            params.push(event.to_owner.get())?,
            params.push(event.holder.clone())?,
            params.push(event.business_type.as_str())?,
            params.push(event.reason.as_str())?,
            params.push(event.status.as_str())?,
            params.push(event.created_at)?,
            params.push(event.correlation_id.as_str())?,
        ]
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>();
        values.push(match first_position {
            Some(first) => params.push(first + offset)?.to_string(),
            None => POSTGRES_POSITION.to_owned(),
        });
        rows.push(format!("({})", values.join(", ")));
    }
    let sql = format!(
        "INSERT INTO item_events (id, item_instance_id, version, event_type, idempotency_key, fingerprint, actor, \
         from_owner_user_id, to_owner_user_id, holder, business_type, reason, status, created_at, correlation_id, \
         stream_position) VALUES {}",
        rows.join(", ")
    );
    sqlx::query_with(&sql, params.into_arguments()).execute(&mut **tx).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use economy_kit::db::DbOptions;
    use economy_kit::testing::TestDatabase;

    use super::*;
    use crate::domain::ids::{TemplateCode, UserId};
    use crate::domain::import::ImportedItem;
    use crate::domain::item::{ItemState, ItemStatus};
    use crate::domain::template::{ItemKind, Template};

    fn plan(external_id: &str) -> ImportPlan {
        let row = ImportedItem {
            external_id: external_id.into(),
            template: TemplateCode::parse("voucher").expect("code"),
            owner: UserId::parse(7).expect("user"),
            status: ItemStatus::Used,
            expires_at: None,
            granted_at: 1_000,
            metadata: BTreeMap::new(),
        };
        row.plan(ItemState::Used, "user:1").expect("plan")
    }

    #[tokio::test]
    async fn new_rows_are_inserted_together_with_positions_in_order() -> anyhow::Result<()> {
        let database = TestDatabase::new().await?;
        let store = ItemStore::open(&database.url, &DbOptions::default()).await?;
        let template = Template {
            code: TemplateCode::parse("voucher").expect("code"),
            display_name: "Voucher".into(),
            kind: ItemKind::Voucher,
            default_validity_secs: 0,
            redeemable: false,
            consumable: false,
            metadata: BTreeMap::new(),
            created_at: 0,
            updated_at: 0,
        };
        store.define_template(&template, 0).await?;
        store.import_item(&plan("L-0"), 5).await?;
        let plans = vec![plan("L-1"), plan("L-2"), plan("L-0"), plan("L-3")];
        assert_eq!(store.fresh(&plans).await?, [0, 1, 3]);
        let fresh: Vec<&ImportPlan> = [0, 1, 3].iter().map(|place| &plans[*place]).collect();
        store.insert_together(&fresh, 5).await?;
        let again = store.import_items(&plans, 6).await?;
        assert!(again.iter().all(|imported| matches!(imported, Ok(Imported::Unchanged(_)))), "{again:?}");
        let positions: Vec<(i64,)> =
            sqlx::query_as("SELECT stream_position FROM item_events ORDER BY stream_position, id")
                .fetch_all(store.db.pool())
                .await?;
        assert_eq!(positions.len(), 4);
        if store.backend() == Backend::Sqlite {
            assert_eq!(positions, [(1,), (2,), (3,), (4,)], "one position an event, in order");
        }
        Ok(())
    }
}
