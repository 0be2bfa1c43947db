//! The grouped view (docs/items.md, "Reading"): a user's instances grouped by (template, status
//! bucket, UTC expiry day, metadata hash) with a count and up to `MAX_IDS_PER_GROUP` ids,
//! groups ordered by that key and paged with it as the cursor. Both queries run in SQL
//! (row-value comparisons and `ROW_NUMBER()` work on SQLite and PostgreSQL alike).

use std::collections::HashMap;

use super::{ItemFilter, ItemStore, Page};
use crate::domain::ItemError;
use crate::domain::group::{DAY_MILLIS, Group, GroupKey, MAX_IDS_PER_GROUP};
use crate::domain::ids::TemplateCode;
use crate::domain::item::StatusBucket;

/// Group columns of an owner's instances in the wanted statuses (`$1` owner, `$2`-`$6`
/// statuses); `-1` stands for "never expires".
fn keyed_items() -> String {
    format!(
        "SELECT i.id, i.template_code, \
         CAST(CASE i.status WHEN 'available' THEN 1 WHEN 'locked' THEN 2 ELSE 3 END AS BIGINT) AS bucket, \
         CAST(COALESCE(i.expires_at / {DAY_MILLIS}, -1) AS BIGINT) AS expiry_day, i.metadata_hash \
         FROM item_instances i WHERE i.owner_user_id = $1 AND i.status IN ($2, $3, $4, $5, $6)"
    )
}

const KEY: &str = "(template_code, bucket, expiry_day, metadata_hash)";

type GroupRow = (String, i64, i64, String, i64);
type IdRow = (String, String, i64, i64, String);

/// The bound form of a key: (template, bucket rank, expiry day or -1, hash).
fn key_binds(key: &GroupKey) -> (String, i64, i64, String) {
    (key.template.to_string(), key.bucket.rank(), key.expiry_day.unwrap_or(-1), key.metadata_hash.clone())
}

fn key_from(template: &str, bucket: i64, day: i64, hash: String) -> Result<GroupKey, ItemError> {
    let bad = || ItemError::Storage(format!("corrupt group key of template {template}").into());
    Ok(GroupKey {
        template: TemplateCode::parse(template).map_err(|_| bad())?,
        bucket: StatusBucket::from_rank(bucket).ok_or_else(bad)?,
        expiry_day: (day >= 0).then_some(day),
        metadata_hash: hash,
    })
}

impl ItemStore {
    /// One page of groups of `filter`'s instances, after the key `page.after`.
    pub async fn groups(&self, filter: &ItemFilter, page: &Page<GroupKey>) -> Result<Vec<Group>, ItemError> {
        let mut groups = self.group_counts(filter, page).await?;
        let (Some(first), Some(last)) = (groups.first(), groups.last()) else {
            return Ok(groups);
        };
        let ids = self.group_ids(filter, &first.key, &last.key).await?;
        for group in &mut groups {
            group.ids = ids.get(&group.key).cloned().unwrap_or_default();
        }
        Ok(groups)
    }

    async fn group_counts(&self, filter: &ItemFilter, page: &Page<GroupKey>) -> Result<Vec<Group>, ItemError> {
        let sql = format!(
            "SELECT template_code, bucket, expiry_day, metadata_hash, COUNT(*) FROM ({}) g \
             WHERE $7 = 0 OR {KEY} > ($8, $9, $10, $11) \
             GROUP BY template_code, bucket, expiry_day, metadata_hash \
             ORDER BY template_code, bucket, expiry_day, metadata_hash LIMIT $12",
            keyed_items()
        );
        let (template, bucket, day, hash) =
            page.after.as_ref().map(key_binds).unwrap_or((String::new(), 0, 0, String::new()));
        let mut query = sqlx::query_as::<_, GroupRow>(&sql).bind(filter.owner.get());
        for status in filter.status_binds() {
            query = query.bind(status);
        }
        let rows = query
            .bind(i64::from(page.after.is_some()))
            .bind(template)
            .bind(bucket)
            .bind(day)
            .bind(hash)
            .bind(page.limit)
            .fetch_all(self.db.pool())
            .await?;
        rows.into_iter()
            .map(|(template, bucket, day, hash, count)| {
                Ok(Group { key: key_from(&template, bucket, day, hash)?, count, ids: Vec::new() })
            })
            .collect()
    }

    /// Up to `MAX_IDS_PER_GROUP` ids (newest first) of every group from `first` to `last`.
    async fn group_ids(
        &self,
        filter: &ItemFilter,
        first: &GroupKey,
        last: &GroupKey,
    ) -> Result<HashMap<GroupKey, Vec<String>>, ItemError> {
        let sql = format!(
            "SELECT id, template_code, bucket, expiry_day, metadata_hash FROM (\
             SELECT g.id, g.template_code, g.bucket, g.expiry_day, g.metadata_hash, ROW_NUMBER() OVER (\
             PARTITION BY g.template_code, g.bucket, g.expiry_day, g.metadata_hash ORDER BY g.id DESC) AS rn \
             FROM ({}) g WHERE {KEY} >= ($7, $8, $9, $10) AND {KEY} <= ($11, $12, $13, $14)) r \
             WHERE rn <= {MAX_IDS_PER_GROUP} ORDER BY template_code, bucket, expiry_day, metadata_hash, id DESC",
            keyed_items()
        );
        let mut query = sqlx::query_as::<_, IdRow>(&sql).bind(filter.owner.get());
        for status in filter.status_binds() {
            query = query.bind(status);
        }
        for (template, bucket, day, hash) in [key_binds(first), key_binds(last)] {
            query = query.bind(template).bind(bucket).bind(day).bind(hash);
        }
        let mut ids: HashMap<GroupKey, Vec<String>> = HashMap::new();
        for (id, template, bucket, day, hash) in query.fetch_all(self.db.pool()).await? {
            ids.entry(key_from(&template, bucket, day, hash)?).or_default().push(id);
        }
        Ok(ids)
    }
}
