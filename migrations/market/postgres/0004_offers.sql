-- Offers of the platform's shop and exchanges (offer purchases and reward bundles),
-- docs/market.md, "Offers" and "Exchanges". Instants are i64 ms since the epoch (0:
-- none); amounts are i64 in the asset's smallest unit; lists and maps are JSON texts.

CREATE TABLE offers (
    offer_id TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    -- [{"asset_code", "amount"}], the price of one unit.
    price TEXT NOT NULL,
    -- {"assets": [...], "items": [{"template_code", "quantity", "metadata", "valid_for_secs"}]}
    reward TEXT NOT NULL,
    -- Units it may sell in all; -1 for unlimited.
    stock BIGINT NOT NULL CHECK (stock >= -1),
    -- Units reserved or sold by exchanges that did not fail.
    sold BIGINT NOT NULL DEFAULT 0 CHECK (sold >= 0),
    limit_total BIGINT NOT NULL CHECK (limit_total >= 0),
    limit_per_window BIGINT NOT NULL CHECK (limit_per_window >= 0),
    limit_window_secs BIGINT NOT NULL CHECK (limit_window_secs >= 0),
    starts_at BIGINT NOT NULL,
    ends_at BIGINT NOT NULL,
    enabled BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    metadata TEXT NOT NULL,
    version BIGINT NOT NULL CHECK (version > 0),
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Units each user holds of an offer (exchanges that did not fail): the per-user total
-- limit, and the row whose lock serializes one user's purchases of one offer.
CREATE TABLE offer_user_counts (
    offer_id TEXT NOT NULL REFERENCES offers (offer_id),
    user_id BIGINT NOT NULL,
    units BIGINT NOT NULL CHECK (units >= 0),
    PRIMARY KEY (offer_id, user_id)
);

CREATE TABLE exchanges (
    exchange_id TEXT PRIMARY KEY,
    business_event_id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL CHECK (kind IN ('offer_purchase', 'bundle')),
    user_id BIGINT NOT NULL,
    offer_id TEXT NOT NULL,
    quantity BIGINT NOT NULL CHECK (quantity > 0),
    -- [{"asset_code", "amount"}]: the price x quantity ([] for bundles).
    paid TEXT NOT NULL,
    -- The whole reward (an offer's reward x quantity), as offers.reward.
    reward TEXT NOT NULL,
    business_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    status TEXT NOT NULL
        CHECK (status IN ('reserved', 'paid', 'granted', 'completed', 'compensating', 'failed')),
    -- JSON lists: holds (in the order of paid), granted items, ledger transactions.
    payment_hold_ids TEXT NOT NULL,
    granted_items TEXT NOT NULL,
    ledger_transaction_ids TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    failure_asset_code TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);

CREATE INDEX exchanges_by_user ON exchanges (user_id, exchange_id);
CREATE INDEX exchanges_unfinished ON exchanges (status, updated_at);
-- The rolling-window limit: one user's units of one offer since an instant.
CREATE INDEX exchanges_by_offer_user ON exchanges (offer_id, user_id, created_at);
