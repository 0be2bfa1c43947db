//! Audit records of the compensation tools (issue 6, "Compensation tools with audit"):
//! every admin fix (recalculate a balance, force-release a hold, force-unlock an item,
//! re-drive an outbox row, reissue a code on a customer's behalf) writes one record —
//! who, when, what (action + target), the target's state before and after as JSON, why —
//! into the owning service's own `audit_records` table, in the SAME transaction as the
//! fix. The record's idempotency key is UNIQUE there: the database, not the code, decides
//! that a retried fix applies once (ARCHITECTURE.md, "Invariants").
//!
//! Every service migrates the same table (`migrations/<svc>/<backend>/0002_audit.sql`):
//!
//! ```sql
//! CREATE TABLE audit_records (
//!     id TEXT PRIMARY KEY,                   -- UUIDv7
//!     idempotency_key TEXT NOT NULL UNIQUE,
//!     fingerprint TEXT NOT NULL,             -- sha256 hex of action, actor, target, reason
//!     actor TEXT NOT NULL,                   -- user:<id>
//!     action TEXT NOT NULL,                  -- the tool's canonical operation
//!     target_type TEXT NOT NULL,             -- balance | hold | item | outbox | order
//!     target_id TEXT NOT NULL,
//!     before_state TEXT NOT NULL,            -- JSON
//!     after_state TEXT NOT NULL,             -- JSON
//!     reason TEXT NOT NULL,                  -- 1-500 characters
//!     created_at BIGINT NOT NULL             -- ms since the epoch
//! );
//! ```
//!
//! A tool runs: `prior` (same key + same fingerprint -> replay the record; other
//! fingerprint -> `AuditError::KeyReused`), then, inside its write transaction, the fix
//! and `insert` (false when a concurrent twin took the key first: roll back and ask
//! `prior` again).

use economy_proto::audit::v1 as pb;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};

use crate::db::is_unique_violation;
use crate::error::Violations;
use crate::time::to_timestamp;

/// Longest accepted reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Page size of `ListAuditRecords` when the request names none.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// Largest accepted page size of `ListAuditRecords`.
pub const MAX_PAGE_SIZE: i32 = 500;

/// Why a tool's audit step failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The idempotency key was already used for a different fix (`IDEMPOTENCY_KEY_REUSED`).
    #[error("idempotency key {0} was already used for a different request")]
    KeyReused(String),
    /// The database failed (reported as an opaque INTERNAL).
    #[error("storage: {0}")]
    Storage(#[from] sqlx::Error),
}

/// What a tool is about to do, before it knows the target's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// The request's idempotency key (1-128 printable ASCII, validated by the service).
    pub idempotency_key: String,
    /// Who: `user:<id>` (`Caller::actor`).
    pub actor: String,
    /// The tool's canonical operation, e.g. `LEDGER_RECALCULATE_BALANCE`.
    pub action: String,
    /// `balance`, `hold`, `item`, `outbox` or `order`.
    pub target_type: String,
    /// The target's id (`<account>/<asset>` for a balance).
    pub target_id: String,
    /// Why: 1-500 characters (`reason`).
    pub reason: String,
}

impl AuditDraft {
    /// SHA-256 (hex) of the action, actor, target and reason, each length-prefixed: two
    /// calls with one key are the same fix exactly when their fingerprints are equal.
    pub fn fingerprint(&self) -> String {
        let mut hasher = Sha256::new();
        for part in [&self.action, &self.actor, &self.target_type, &self.target_id, &self.reason] {
            hasher.update(format!("{}:", part.len()));
            hasher.update(part.as_bytes());
        }
        hex::encode(hasher.finalize())
    }

    /// The record of this draft, with the target's state `before` and `after` (JSON
    /// texts) at `now` (ms since the epoch); its id is a new UUIDv7.
    pub fn record(&self, before: String, after: String, now: i64) -> AuditRecord {
        AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            idempotency_key: self.idempotency_key.clone(),
            fingerprint: self.fingerprint(),
            actor: self.actor.clone(),
            action: self.action.clone(),
            target_type: self.target_type.clone(),
            target_id: self.target_id.clone(),
            before,
            after,
            reason: self.reason.clone(),
            created_at: now,
        }
    }
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// UUIDv7.
    pub id: String,
    /// UNIQUE per service.
    pub idempotency_key: String,
    /// `AuditDraft::fingerprint`.
    pub fingerprint: String,
    /// Who.
    pub actor: String,
    /// The tool's canonical operation.
    pub action: String,
    /// Kind of the target.
    pub target_type: String,
    /// The target's id.
    pub target_id: String,
    /// The target's state before the fix, JSON (`null` when it did not exist).
    pub before: String,
    /// The target's state after the fix, JSON.
    pub after: String,
    /// Why.
    pub reason: String,
    /// Commit time, ms since the epoch.
    pub created_at: i64,
}

impl AuditRecord {
    /// Logs at `info` that the fix this record audits was applied (the operator tools
    /// call it once, never for a replay): action, target, actor and the record's id.
    pub fn log_applied(&self) {
        tracing::info!(
            action = %self.action,
            target = %self.target_id,
            actor = %self.actor,
            audit_id = %self.id,
            "compensation tool applied"
        );
    }
}

/// Records a violation of `field` unless `value` is a usable reason (not blank, at most
/// 500 characters); returns it trimmed.
pub fn reason(violations: &mut Violations, field: &str, value: &str) -> Option<String> {
    let trimmed = value.trim();
    let ok = !trimmed.is_empty() && trimmed.chars().count() <= MAX_REASON_CHARS;
    violations.check(ok, field, "is required: 1-500 characters saying why");
    ok.then(|| trimmed.to_owned())
}

/// Which records `list` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records of this target.
    pub target_id: Option<String>,
    /// Only records older than this id (the previous page's last).
    pub before: Option<String>,
    /// Records per page, 1..=500.
    pub limit: i64,
}

/// Validates a `ListAuditRecords` request: `page_size` 0 (50) or 1..=500, `page_token`
/// empty or a previous page's token (a UUID), `target_id` at most 200 characters.
pub fn query(violations: &mut Violations, target_id: &str, page_size: i32, page_token: &str) -> AuditQuery {
    violations.check((0..=MAX_PAGE_SIZE).contains(&page_size), "page_size", "must be between 0 and 500");
    violations.check(
        page_token.is_empty() || uuid::Uuid::try_parse(page_token).is_ok(),
        "page_token",
        "a token from the previous page",
    );
    violations.check(target_id.chars().count() <= 200, "target_id", "at most 200 characters");
    let size = if page_size == 0 { DEFAULT_PAGE_SIZE } else { page_size.clamp(1, MAX_PAGE_SIZE) };
    AuditQuery {
        target_id: (!target_id.is_empty()).then(|| target_id.to_owned()),
        before: (!page_token.is_empty()).then(|| page_token.to_owned()),
        limit: i64::from(size),
    }
}

/// One page of records, newest first, and the token of the next page (empty on the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// Newest first.
    pub records: Vec<AuditRecord>,
    /// `page_token` of the next page; empty on the last.
    pub next_page_token: String,
}

const COLUMNS: &str = "id, idempotency_key, fingerprint, actor, action, target_type, target_id, before_state, \
                       after_state, reason, created_at";

fn from_row(row: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    Ok(AuditRecord {
        id: row.try_get("id")?,
        idempotency_key: row.try_get("idempotency_key")?,
        fingerprint: row.try_get("fingerprint")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        before: row.try_get("before_state")?,
        after: row.try_get("after_state")?,
        reason: row.try_get("reason")?,
        created_at: row.try_get("created_at")?,
    })
}

/// The record `draft`'s key already wrote: `Ok(Some)` when it is the same fix (replay),
/// `KeyReused` when the key wrote another one, `Ok(None)` when the key is unused.
pub async fn prior(pool: &AnyPool, draft: &AuditDraft) -> Result<Option<AuditRecord>, AuditError> {
    let sql = format!("SELECT {COLUMNS} FROM audit_records WHERE idempotency_key = $1");
    let Some(row) = sqlx::query(&sql).bind(&draft.idempotency_key).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let record = from_row(&row)?;
    if record.fingerprint == draft.fingerprint() {
        Ok(Some(record))
    } else {
        Err(AuditError::KeyReused(draft.idempotency_key.clone()))
    }
}

/// Inserts `record` on `conn` (inside the fix's transaction). `Ok(false)` when its
/// idempotency key is already taken (a concurrent twin committed first): the caller
/// rolls back and asks `prior`.
pub async fn insert(conn: &mut AnyConnection, record: &AuditRecord) -> Result<bool, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO audit_records (id, idempotency_key, fingerprint, actor, action, target_type, target_id, \
         before_state, after_state, reason, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&record.id)
    .bind(&record.idempotency_key)
    .bind(&record.fingerprint)
    .bind(&record.actor)
    .bind(&record.action)
    .bind(&record.target_type)
    .bind(&record.target_id)
    .bind(&record.before)
    .bind(&record.after)
    .bind(&record.reason)
    .bind(record.created_at)
    .execute(conn)
    .await;
    match result {
        Ok(_) => Ok(true),
        Err(error) if is_unique_violation(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

/// One page of records matching `query`, newest first (by UUIDv7 id).
pub async fn list(pool: &AnyPool, query: &AuditQuery) -> Result<AuditPage, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_records WHERE ($1 = '' OR target_id = $1) AND ($2 = '' OR id < $2) \
         ORDER BY id DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(query.target_id.as_deref().unwrap_or_default())
        .bind(query.before.as_deref().unwrap_or_default())
        .bind(query.limit.saturating_add(1))
        .fetch_all(pool)
        .await?;
    let mut records = rows.iter().map(from_row).collect::<Result<Vec<_>, _>>()?;
    let more = i64::try_from(records.len()).is_ok_and(|count| count > query.limit);
    records.truncate(usize::try_from(query.limit).unwrap_or(usize::MAX));
    let next_page_token = match (more, records.last()) {
        (true, Some(last)) => last.id.clone(),
        _ => String::new(),
    };
    Ok(AuditPage { records, next_page_token })
}

/// Domain record -> proto (the fingerprint stays inside the service).
pub fn to_proto(record: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        id: record.id.clone(),
        actor: record.actor.clone(),
        action: record.action.clone(),
        target_type: record.target_type.clone(),
        target_id: record.target_id.clone(),
        before: record.before.clone(),
        after: record.after.clone(),
        reason: record.reason.clone(),
        idempotency_key: record.idempotency_key.clone(),
        created_at: Some(to_timestamp(record.created_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::violated_fields;

    fn draft(reason: &str) -> AuditDraft {
        AuditDraft {
            idempotency_key: "k".into(),
            actor: "user:1".into(),
            action: "LEDGER_FORCE_RELEASE_HOLD".into(),
            target_type: "hold".into(),
            target_id: "h1".into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn fingerprints_cover_every_part() {
        let base = draft("orphan").fingerprint();
        assert_eq!(base, draft("orphan").fingerprint());
        assert_ne!(base, draft("other").fingerprint());
        assert_ne!(base, AuditDraft { actor: "user:2".into(), ..draft("orphan") }.fingerprint());
        assert_ne!(base, AuditDraft { target_id: "h2".into(), ..draft("orphan") }.fingerprint());
        // Length prefixes: moving text between parts changes the fingerprint.
        let shifted = AuditDraft { target_type: "hol".into(), target_id: "dh1".into(), ..draft("orphan") };
        assert_ne!(base, shifted.fingerprint());
        assert_eq!(base.len(), 64);
    }

    #[test]
    fn reasons_are_required_and_bounded() {
        let mut violations = Violations::default();
        assert_eq!(reason(&mut violations, "reason", "  lost code  ").as_deref(), Some("lost code"));
        assert!(violations.is_empty());
        assert_eq!(reason(&mut violations, "reason", "   "), None);
        assert_eq!(reason(&mut violations, "reason", &"x".repeat(501)), None);
        assert!(reason(&mut violations, "reason", &"é".repeat(500)).is_some());
        let status = violations.finish("economy.test").expect_err("invalid");
        assert_eq!(violated_fields(&status), ["reason", "reason"]);
    }

    #[test]
    fn queries_default_and_bound_the_page() {
        let mut violations = Violations::default();
        let first = query(&mut violations, "", 0, "");
        assert_eq!(first, AuditQuery { target_id: None, before: None, limit: 50 });
        assert!(violations.is_empty());
        query(&mut violations, "", 501, "not-a-token");
        let status = violations.finish("economy.test").expect_err("invalid");
        assert_eq!(violated_fields(&status), ["page_size", "page_token"]);
    }
}
