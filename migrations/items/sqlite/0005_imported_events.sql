-- Imported instances (docs/import.md, "Item instances"): an instance brought in from an
-- existing economy carries one `imported` event. SQLite cannot change a CHECK in place,
-- so item_events is rebuilt with the wider one: same columns, rows, positions and indexes.

CREATE TABLE item_events_widened (
    id TEXT PRIMARY KEY,
    item_instance_id TEXT NOT NULL REFERENCES item_instances (id),
    version BIGINT NOT NULL CHECK (version > 0),
    event_type TEXT NOT NULL
        CHECK (event_type IN ('granted', 'locked', 'unlocked', 'transferred', 'used', 'expired', 'revoked', 'imported')),
    idempotency_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    actor TEXT NOT NULL,
    from_owner_user_id BIGINT,
    to_owner_user_id BIGINT NOT NULL,
    holder TEXT,
    business_type TEXT NOT NULL,
    reason TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    correlation_id TEXT NOT NULL DEFAULT '',
    stream_position BIGINT NOT NULL DEFAULT 0,
    UNIQUE (item_instance_id, idempotency_key),
    UNIQUE (item_instance_id, version)
);

INSERT INTO item_events_widened (id, item_instance_id, version, event_type, idempotency_key, fingerprint, actor,
    from_owner_user_id, to_owner_user_id, holder, business_type, reason, status, created_at, correlation_id,
    stream_position)
SELECT id, item_instance_id, version, event_type, idempotency_key, fingerprint, actor, from_owner_user_id,
    to_owner_user_id, holder, business_type, reason, status, created_at, correlation_id, stream_position
FROM item_events;

DROP TABLE item_events;

ALTER TABLE item_events_widened RENAME TO item_events;

CREATE INDEX item_events_by_correlation ON item_events (correlation_id, id) WHERE correlation_id <> '';

CREATE INDEX item_events_by_position ON item_events (stream_position, id);
