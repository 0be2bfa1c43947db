-- A `processing` record is a lease: its owner may still be working on it until
-- lease_expires_at (claim time + the upstream timeout + a margin, ms since the epoch).
-- Past it, a retry with the same key and fingerprint takes the record over and forwards
-- again with the same business event, which the service answers as a replay. Records
-- claimed before this migration get 0: already expired, so a retry takes them over.
ALTER TABLE idempotency_records ADD COLUMN lease_expires_at BIGINT NOT NULL DEFAULT 0;

-- Audit records of the gateway's operator tools (releasing a stuck idempotency record),
-- the same table every service keeps (economy_kit::audit). Its idempotency key is
-- UNIQUE, so a retried release writes no second record.
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
