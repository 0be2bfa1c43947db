-- Market schema (docs/market.md). Instants are i64 ms since the epoch; amounts
-- are i64 in the asset's smallest unit.

CREATE TABLE listings (
    listing_id TEXT PRIMARY KEY,
    create_key TEXT NOT NULL UNIQUE,
    seller_user_id BIGINT NOT NULL,
    offer_kind TEXT NOT NULL CHECK (offer_kind IN ('asset', 'item')),
    asset_code TEXT NOT NULL,
    asset_amount BIGINT NOT NULL,
    item_instance_id TEXT NOT NULL,
    item_template_code TEXT NOT NULL,
    price_asset TEXT NOT NULL,
    price_amount BIGINT NOT NULL CHECK (price_amount > 0),
    status TEXT NOT NULL
        CHECK (status IN ('creating', 'on_sale', 'selling', 'sold', 'cancelled', 'expired', 'failed')),
    hold_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    closed_at BIGINT NOT NULL
);

-- An item is in at most one open listing.
CREATE UNIQUE INDEX listings_one_open_per_item ON listings (item_instance_id)
    WHERE offer_kind = 'item' AND status IN ('creating', 'on_sale', 'selling');
CREATE INDEX listings_browse_asset ON listings (status, asset_code, price_amount, listing_id);
CREATE INDEX listings_browse_template ON listings (status, item_template_code, price_amount, listing_id);
CREATE INDEX listings_due ON listings (status, updated_at);

CREATE TABLE trades (
    trade_id TEXT PRIMARY KEY,
    business_event_id TEXT NOT NULL UNIQUE,
    listing_id TEXT NOT NULL REFERENCES listings (listing_id),
    buyer_user_id BIGINT NOT NULL,
    seller_user_id BIGINT NOT NULL,
    price_asset TEXT NOT NULL,
    price BIGINT NOT NULL CHECK (price > 0),
    fee BIGINT NOT NULL CHECK (fee >= 0),
    seller_net BIGINT NOT NULL CHECK (seller_net >= 0),
    status TEXT NOT NULL
        CHECK (status IN ('pending', 'paid', 'delivered', 'completed', 'failed', 'refunding', 'refunded')),
    payment_hold_id TEXT NOT NULL,
    ledger_transaction_ids TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL
);

-- At most one unfinished trade per listing.
CREATE UNIQUE INDEX trades_one_live_per_listing ON trades (listing_id)
    WHERE status IN ('pending', 'paid', 'delivered', 'refunding');
CREATE INDEX trades_by_buyer ON trades (buyer_user_id, trade_id);
CREATE INDEX trades_by_seller ON trades (seller_user_id, trade_id);
CREATE INDEX trades_unfinished ON trades (status, updated_at);

-- Idempotency of cancellations.
CREATE TABLE listing_cancellations (
    idempotency_key TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL REFERENCES listings (listing_id),
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Escrow owed back after a commit (release the hold / unlock the item), docs/market.md.
CREATE TABLE market_outbox (
    id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL UNIQUE REFERENCES listings (listing_id),
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    claimed_until BIGINT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    delivered_at BIGINT NOT NULL DEFAULT 0
);

CREATE INDEX market_outbox_due ON market_outbox (status, next_attempt_at);
