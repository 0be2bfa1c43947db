//! The template catalog.

use super::ItemStore;
use super::rows::{self, TEMPLATE_COLUMNS, TemplateRow, metadata_json};
use crate::domain::ItemError;
use crate::domain::template::Template;

impl ItemStore {
    /// Inserts the template or updates everything but its creation time; returns the
    /// stored template and whether it was created. Flags apply to existing instances
    /// from then on (they are read when an instance is consumed).
    pub async fn define_template(&self, template: &Template, now: i64) -> Result<(Template, bool), ItemError> {
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let existed = sqlx::query("SELECT code FROM item_templates WHERE code = $1")
            .bind(template.code.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO item_templates \
             (code, display_name, kind, default_validity_secs, redeemable, consumable, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (code) DO UPDATE SET display_name = excluded.display_name, kind = excluded.kind, \
             default_validity_secs = excluded.default_validity_secs, redeemable = excluded.redeemable, \
             consumable = excluded.consumable, metadata = excluded.metadata, updated_at = excluded.updated_at",
        )
        .bind(template.code.as_str())
        .bind(&template.display_name)
        .bind(template.kind.as_str())
        .bind(template.default_validity_secs)
        .bind(i64::from(template.redeemable))
        .bind(i64::from(template.consumable))
        .bind(metadata_json(&template.metadata)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let stored = self.template(template.code.as_str()).await?;
        Ok((stored, !existed))
    }

    /// One template (`TEMPLATE_NOT_FOUND`).
    pub async fn template(&self, code: &str) -> Result<Template, ItemError> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM item_templates WHERE code = $1");
        let row: Option<TemplateRow> = sqlx::query_as(&sql).bind(code).fetch_optional(self.db.pool()).await?;
        row.map(rows::template).transpose()?.ok_or_else(|| ItemError::TemplateNotFound(code.to_owned()))
    }

    /// The whole catalog, by code.
    pub async fn templates(&self) -> Result<Vec<Template>, ItemError> {
        let sql = format!("SELECT {TEMPLATE_COLUMNS} FROM item_templates ORDER BY code");
        let rows: Vec<TemplateRow> = sqlx::query_as(&sql).fetch_all(self.db.pool()).await?;
        rows.into_iter().map(rows::template).collect()
    }
}
