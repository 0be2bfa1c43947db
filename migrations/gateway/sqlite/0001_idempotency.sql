-- Gateway idempotency records (docs/idempotency.md), keyed (user_id, idempotency_key).
-- Instants are i64 ms since the epoch.

CREATE TABLE idempotency_records (
    user_id BIGINT NOT NULL,
    idempotency_key TEXT NOT NULL,
    canonical_operation TEXT NOT NULL,
    method TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('processing', 'completed', 'failed')),
    business_event_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    response_code BIGINT,
    response_message TEXT,
    response_body BLOB,
    response_details BLOB,
    response_bytes BIGINT NOT NULL DEFAULT 0,
    response_truncated BIGINT NOT NULL DEFAULT 0 CHECK (response_truncated IN (0, 1)),
    failure_reason TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    completed_at BIGINT,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, idempotency_key)
);

CREATE INDEX idempotency_by_status ON idempotency_records (status, updated_at);
CREATE INDEX idempotency_by_expiry ON idempotency_records (expires_at);
