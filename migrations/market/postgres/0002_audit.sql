-- Audit records of the market service's compensation tools (issue 6, "Compensation tools
-- with audit"; economy_kit::audit). Each record is written in the same transaction as
-- the fix it describes; its idempotency key is UNIQUE, so a retried fix writes no second
-- record. before_state / after_state are JSON texts of the target's state (never a
-- secret). Instants are i64 ms since the epoch.

CREATE TABLE audit_records (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id TEXT NOT NULL,
    before_state TEXT NOT NULL,
    after_state TEXT NOT NULL,
    reason TEXT NOT NULL CHECK (length(reason) BETWEEN 1 AND 500),
    created_at BIGINT NOT NULL
);

CREATE INDEX audit_records_by_target ON audit_records (target_id, id);
