-- Item Instances schema (docs/items.md). Instants are i64 ms since the epoch;
-- booleans are 0/1; metadata is a JSON object of strings.

CREATE TABLE item_templates (
    code TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('voucher', 'product', 'service', 'equipment', 'card', 'other')),
    default_validity_secs BIGINT NOT NULL CHECK (default_validity_secs >= 0),
    redeemable BIGINT NOT NULL CHECK (redeemable IN (0, 1)),
    consumable BIGINT NOT NULL CHECK (consumable IN (0, 1)),
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- `grant_key` is the idempotency key of the grant that created the instance: a retried
-- grant finds the same instance. `version` counts the instance's events; every change
-- is a compare-and-set on it. A lock holder is set exactly while the status is locked.
CREATE TABLE item_instances (
    id TEXT PRIMARY KEY,
    grant_key TEXT NOT NULL UNIQUE,
    template_code TEXT NOT NULL REFERENCES item_templates (code),
    owner_user_id BIGINT NOT NULL CHECK (owner_user_id > 0),
    status TEXT NOT NULL CHECK (status IN ('available', 'locked', 'used', 'expired', 'revoked')),
    lock_holder TEXT,
    locked_at BIGINT,
    lock_expires_at BIGINT,
    expires_at BIGINT,
    metadata TEXT NOT NULL,
    metadata_hash TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version > 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    CHECK ((status = 'locked') = (lock_holder IS NOT NULL AND locked_at IS NOT NULL))
);

CREATE INDEX item_instances_by_owner ON item_instances (owner_user_id, id);
CREATE INDEX item_instances_by_expiry ON item_instances (status, expires_at);
CREATE INDEX item_instances_by_lock_expiry ON item_instances (status, lock_expires_at);

-- One row per change. UNIQUE (item_instance_id, idempotency_key): a retried change
-- returns the original outcome; UNIQUE (item_instance_id, version): one history.
CREATE TABLE item_events (
    id TEXT PRIMARY KEY,
    item_instance_id TEXT NOT NULL REFERENCES item_instances (id),
    version BIGINT NOT NULL CHECK (version > 0),
    event_type TEXT NOT NULL
        CHECK (event_type IN ('granted', 'locked', 'unlocked', 'transferred', 'used', 'expired', 'revoked')),
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
    UNIQUE (item_instance_id, idempotency_key),
    UNIQUE (item_instance_id, version)
);
