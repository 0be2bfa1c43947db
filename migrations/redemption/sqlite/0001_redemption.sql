-- Redemption Orders schema (docs/redemption.md). Instants are i64 ms since the
-- epoch. Codes are stored only as sha256_hex of their normalized form.

CREATE TABLE redemption_orders (
    order_id TEXT PRIMARY KEY,
    item_instance_id TEXT NOT NULL,
    owner_user_id BIGINT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('locking', 'pending', 'fulfilled', 'cancelled', 'expired', 'failed')),
    code_hash TEXT NOT NULL UNIQUE CHECK (length(code_hash) = 64),
    create_key TEXT NOT NULL UNIQUE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    code_issued_at BIGINT NOT NULL,
    resolved_at BIGINT,
    redeemer_user_id BIGINT
);

-- One open (locking or pending) order per item.
CREATE UNIQUE INDEX redemption_orders_one_open_per_item
    ON redemption_orders (item_instance_id) WHERE status IN ('locking', 'pending');
CREATE INDEX redemption_orders_by_owner ON redemption_orders (owner_user_id, order_id);
CREATE INDEX redemption_orders_by_item ON redemption_orders (item_instance_id, order_id);
CREATE INDEX redemption_orders_open ON redemption_orders (status, expires_at);

-- Idempotency of fulfil and cancel: the key that resolved an order.
CREATE TABLE redemption_actions (
    idempotency_key TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES redemption_orders (order_id),
    action TEXT NOT NULL CHECK (action IN ('fulfill', 'cancel')),
    actor TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Calls to Items owed after a commit, delivered with backoff (docs/redemption.md).
CREATE TABLE redemption_outbox (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES redemption_orders (order_id),
    action TEXT NOT NULL CHECK (action IN ('consume', 'unlock')),
    item_instance_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);

CREATE INDEX redemption_outbox_due ON redemption_outbox (status, next_attempt_at);
