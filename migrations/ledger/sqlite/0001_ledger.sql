-- Asset Ledger schema (docs/ledger.md). Instants are i64 ms since the epoch;
-- amounts are i64 in the asset's smallest unit.

CREATE TABLE assets (
    code TEXT PRIMARY KEY,
    display_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE conversion_rules (
    id TEXT PRIMARY KEY,
    from_asset TEXT NOT NULL REFERENCES assets (code),
    from_amount BIGINT NOT NULL CHECK (from_amount > 0),
    to_asset TEXT NOT NULL REFERENCES assets (code),
    to_amount BIGINT NOT NULL CHECK (to_amount > 0),
    enabled BIGINT NOT NULL CHECK (enabled IN (0, 1)),
    updated_at BIGINT NOT NULL
);

-- `account` is `user:<id>` for users, the system account's name otherwise.
CREATE TABLE accounts (
    account TEXT PRIMARY KEY,
    user_id BIGINT UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE balances (
    account TEXT NOT NULL REFERENCES accounts (account),
    asset_code TEXT NOT NULL REFERENCES assets (code),
    available BIGINT NOT NULL,
    frozen BIGINT NOT NULL CHECK (frozen >= 0),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (account, asset_code)
);

CREATE TABLE journal_entries (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    business_type TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    memo TEXT NOT NULL,
    actor TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE postings (
    entry_id TEXT NOT NULL REFERENCES journal_entries (id),
    seq BIGINT NOT NULL,
    account TEXT NOT NULL REFERENCES accounts (account),
    asset_code TEXT NOT NULL REFERENCES assets (code),
    bucket TEXT NOT NULL CHECK (bucket IN ('available', 'frozen')),
    amount BIGINT NOT NULL CHECK (amount <> 0),
    hold_id TEXT,
    PRIMARY KEY (entry_id, seq)
);

CREATE INDEX postings_by_account ON postings (account, asset_code, entry_id);

-- `idempotency_key` is the key of the entry that created the hold.
CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    account TEXT NOT NULL REFERENCES accounts (account),
    asset_code TEXT NOT NULL REFERENCES assets (code),
    amount BIGINT NOT NULL CHECK (amount > 0),
    settled_amount BIGINT NOT NULL CHECK (settled_amount >= 0),
    status TEXT NOT NULL CHECK (status IN ('open', 'settled', 'released', 'expired')),
    reference TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    resolved_at BIGINT,
    resolution_entry_id TEXT
);

CREATE INDEX holds_by_account ON holds (account, id);
CREATE INDEX holds_by_expiry ON holds (status, expires_at);
