//! The entry stream's storage side (docs/ledger.md, "Watching entries"; the ordering rule
//! in docs/streams.md): pages of journal entries after a cursor. Positions: on SQLite
//! the entry's rowid (the one writer inserts in commit order), on PostgreSQL the writing
//! transaction's id, which `journal_entries.stream_position` takes by default (migration
//! 0006), so no write path names it.

use economy_kit::db::Backend;
use economy_kit::db::params::Params;
use economy_kit::watch::{Committed, Cursor, StartPoint, StreamTable};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::LedgerStore;
use crate::domain::LedgerError;
use crate::domain::entry::Entry;
use crate::domain::ids::AccountId;

const CHANNEL: &str = "economy_ledger_entries";
const SQLITE: StreamTable = StreamTable { table: "journal_entries", position: "rowid", channel: CHANNEL };
const POSTGRES: StreamTable = StreamTable { table: "journal_entries", position: "stream_position", channel: CHANNEL };

/// Which entries a stream carries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryWatch {
    /// Only entries with a posting on this account.
    pub account: Option<AccountId>,
    /// Only entries with a posting of this asset (on `account` when set).
    pub asset: Option<String>,
    /// Only entries of this business type.
    pub business_type: Option<String>,
}

impl LedgerStore {
    fn stream_table(&self) -> StreamTable {
        match self.db.backend() {
            Backend::Sqlite => SQLITE,
            Backend::Postgres => POSTGRES,
        }
    }

    /// A receiver that changes after entries were committed (`economy_kit::watch::Appended`).
    pub fn appended(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// On PostgreSQL, relays commits between replicas until `shutdown`.
    pub fn spawn_relay(&self, shutdown: CancellationToken) {
        self.appended.spawn_relay(self.stream_table(), &self.db, &self.url, shutdown);
    }

    /// The stream horizon now (docs/streams.md).
    pub async fn horizon(&self) -> Result<i64, LedgerError> {
        Ok(self.stream_table().horizon(&self.db).await?)
    }

    /// The start of a stream "from now" (docs/streams.md).
    pub async fn start_point(&self) -> Result<StartPoint, LedgerError> {
        Ok(self.stream_table().start_point(&self.db).await?)
    }

    /// Up to `limit` entries of `filter` strictly after `after` and below `horizon` (read
    /// with [`LedgerStore::horizon`] before this call), in stream order, with their
    /// cursors, postings and resulting balances; without those visible in `committed`
    /// (PostgreSQL only). Only the filters present become conditions.
    pub async fn entries_after(
        &self,
        filter: &EntryWatch,
        after: &Cursor,
        horizon: i64,
        committed: Option<&Committed>,
        limit: i64,
    ) -> Result<Vec<(Cursor, Entry)>, LedgerError> {
        let table = self.stream_table();
        let position = table.position;
        let mut params = Params::numbered();
        let from = params.push(after.position)?;
        let id = params.push(after.id.clone())?;
        let mut conditions = vec![
            format!("{position} >= {from} AND ({position} > {from} OR id > {id})"),
            format!("{position} < {}", params.push(horizon)?),
        ];
        if let Some(business_type) = &filter.business_type {
            conditions.push(format!("business_type = {}", params.push(business_type.clone())?));
        }
        let mut posting = Vec::new();
        if let Some(account) = &filter.account {
            posting.push(format!(" AND p.account = {}", params.push(account.key())?));
        }
        if let Some(asset) = &filter.asset {
            posting.push(format!(" AND p.asset_code = {}", params.push(asset.clone())?));
        }
        if !posting.is_empty() {
            conditions.push(format!(
                "EXISTS (SELECT 1 FROM postings AS p WHERE p.entry_id = journal_entries.id{})",
                posting.concat()
            ));
        }
        if let Some(committed) = committed {
            let snapshot = params.push(committed.snapshot.clone())?;
            conditions.push(table.not_committed(&snapshot.to_string()));
        }
        let limit = params.push(limit)?;
        let sql = format!(
            "SELECT id, {position} FROM journal_entries WHERE {} ORDER BY {position}, id LIMIT {limit}",
            conditions.join(" AND ")
        );
        let rows: Vec<(String, i64)> =
            sqlx::query_as_with(&sql, params.into_arguments()).fetch_all(self.db.pool()).await?;
        let ids: Vec<String> = rows.iter().map(|(id, _)| id.clone()).collect();
        let mut entries = self.entries(&ids).await?;
        entries.sort_by_key(|entry| ids.iter().position(|id| id == &entry.id));
        Ok(rows.into_iter().zip(entries).map(|((id, position), entry)| (Cursor::after(position, &id), entry)).collect())
    }
}
