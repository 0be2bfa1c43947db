//! Catalog, conversion rules and system accounts.

use std::collections::BTreeMap;

use super::LedgerStore;
use crate::domain::LedgerError;
use crate::domain::catalog::{Asset, AssetKind, ConversionRule};
use crate::domain::ids::{AccountId, Code};

/// An `assets` row ([`ASSET_COLUMNS`]): metadata as a JSON object, `created_at` in ms.
#[derive(sqlx::FromRow)]
struct AssetRow {
    code: String,
    display_name: String,
    kind: String,
    metadata: String,
    created_at: i64,
}

/// A `conversion_rules` row ([`RULE_COLUMNS`]): `enabled` is 0 or 1.
#[derive(sqlx::FromRow)]
struct RuleRow {
    id: String,
    from_asset: String,
    from_amount: i64,
    to_asset: String,
    to_amount: i64,
    enabled: i64,
}

const ASSET_COLUMNS: &str = "code, display_name, kind, metadata, created_at";
const RULE_COLUMNS: &str = "id, from_asset, from_amount, to_asset, to_amount, enabled";

fn asset_from_row(row: AssetRow) -> Result<Asset, LedgerError> {
    let corrupt = |what: &str| LedgerError::Storage(format!("corrupt asset row {}: {what}", row.code).into());
    Ok(Asset {
        code: Code::parse(&row.code).map_err(|_| corrupt("code"))?,
        kind: AssetKind::parse(&row.kind).ok_or_else(|| corrupt("kind"))?,
        metadata: serde_json::from_str::<BTreeMap<String, String>>(&row.metadata).map_err(|_| corrupt("metadata"))?,
        display_name: row.display_name,
        created_at: row.created_at,
    })
}

fn rule_from_row(row: RuleRow) -> Result<ConversionRule, LedgerError> {
    let corrupt = || LedgerError::Storage(format!("corrupt conversion rule row {}", row.id).into());
    Ok(ConversionRule {
        id: Code::parse(&row.id).map_err(|_| corrupt())?,
        from_asset: Code::parse(&row.from_asset).map_err(|_| corrupt())?,
        to_asset: Code::parse(&row.to_asset).map_err(|_| corrupt())?,
        from_amount: row.from_amount,
        to_amount: row.to_amount,
        enabled: row.enabled != 0,
    })
}

impl LedgerStore {
    /// Inserts the asset or updates its display name, kind and metadata; returns the
    /// stored asset and whether it was created.
    pub async fn define_asset(&self, asset: &Asset) -> Result<(Asset, bool), LedgerError> {
        let metadata = serde_json::to_string(&asset.metadata)
            .map_err(|error| LedgerError::Storage(economy_kit::error::StorageCause::new(error)))?;
        let now = self.clock.now_millis();
        let mut writer = self.db.writer().await?;
        let mut tx = writer.begin().await?;
        let existed = sqlx::query("SELECT code FROM assets WHERE code = $1")
            .bind(asset.code.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        sqlx::query(
            "INSERT INTO assets (code, display_name, kind, metadata, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (code) DO UPDATE SET display_name = excluded.display_name, kind = excluded.kind, \
             metadata = excluded.metadata, updated_at = excluded.updated_at",
        )
        .bind(asset.code.as_str())
        .bind(&asset.display_name)
        .bind(asset.kind.as_str())
        .bind(metadata)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let stored =
            self.asset(asset.code.as_str()).await?.ok_or_else(|| LedgerError::AssetNotFound(asset.code.to_string()))?;
        Ok((stored, !existed))
    }

    /// One asset.
    pub async fn asset(&self, code: &str) -> Result<Option<Asset>, LedgerError> {
        let sql = format!("SELECT {ASSET_COLUMNS} FROM assets WHERE code = $1");
        let row: Option<AssetRow> = sqlx::query_as(&sql).bind(code).fetch_optional(self.db.pool()).await?;
        row.map(asset_from_row).transpose()
    }

    /// The whole catalog, by code.
    pub async fn assets(&self) -> Result<Vec<Asset>, LedgerError> {
        let sql = format!("SELECT {ASSET_COLUMNS} FROM assets ORDER BY code");
        let rows: Vec<AssetRow> = sqlx::query_as(&sql).fetch_all(self.db.pool()).await?;
        rows.into_iter().map(asset_from_row).collect()
    }

    /// Inserts or replaces a rule; both assets must exist (`ASSET_NOT_FOUND`).
    pub async fn define_rule(&self, rule: &ConversionRule) -> Result<ConversionRule, LedgerError> {
        for asset in [&rule.from_asset, &rule.to_asset] {
            if self.asset(asset.as_str()).await?.is_none() {
                return Err(LedgerError::AssetNotFound(asset.to_string()));
            }
        }
        sqlx::query(
            "INSERT INTO conversion_rules (id, from_asset, from_amount, to_asset, to_amount, enabled, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (id) DO UPDATE SET from_asset = excluded.from_asset, from_amount = excluded.from_amount, \
             to_asset = excluded.to_asset, to_amount = excluded.to_amount, enabled = excluded.enabled, \
             updated_at = excluded.updated_at",
        )
        .bind(rule.id.as_str())
        .bind(rule.from_asset.as_str())
        .bind(rule.from_amount)
        .bind(rule.to_asset.as_str())
        .bind(rule.to_amount)
        .bind(i64::from(rule.enabled))
        .bind(self.clock.now_millis())
        .execute(&mut *self.db.writer().await?)
        .await?;
        Ok(rule.clone())
    }

    /// One rule (`RULE_NOT_FOUND`).
    pub async fn rule(&self, id: &str) -> Result<ConversionRule, LedgerError> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM conversion_rules WHERE id = $1");
        let row: Option<RuleRow> = sqlx::query_as(&sql).bind(id).fetch_optional(self.db.pool()).await?;
        row.map(rule_from_row).transpose()?.ok_or_else(|| LedgerError::RuleNotFound(id.to_owned()))
    }

    /// Every rule, by id.
    pub async fn rules(&self) -> Result<Vec<ConversionRule>, LedgerError> {
        let sql = format!("SELECT {RULE_COLUMNS} FROM conversion_rules ORDER BY id");
        let rows: Vec<RuleRow> = sqlx::query_as(&sql).fetch_all(self.db.pool()).await?;
        rows.into_iter().map(rule_from_row).collect()
    }

    /// Creates the named system accounts that do not exist yet.
    pub(super) async fn seed_system_accounts(&self, names: &[String]) -> anyhow::Result<()> {
        for name in names {
            let account = AccountId::system(name).map_err(|error| anyhow::anyhow!("system account {name}: {error}"))?;
            sqlx::query("INSERT INTO accounts (account, user_id, created_at) VALUES ($1, NULL, $2) ON CONFLICT (account) DO NOTHING")
                .bind(account.key())
                .bind(self.clock.now_millis())
                .execute(&mut *self.db.writer().await?)
                .await?;
        }
        Ok(())
    }
}
