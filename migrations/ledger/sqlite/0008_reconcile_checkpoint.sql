-- Incremental reconciliation (docs/ledger.md, "Reconciliation"): each run checks only
-- the journal entries after the checkpoint (a stream cursor, docs/streams.md) against
-- the last verified state of each balance they touch, then moves the checkpoint and
-- those states forward in one transaction. The per-asset totals of the verified states
-- are kept as running sums (exact, as decimal text: a legal total may leave i64), so the
-- zero-sum check never sums every balance row.

CREATE TABLE reconcile_checkpoints (
    name TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    entry_id TEXT NOT NULL,
    entries_checked BIGINT NOT NULL,
    checked_at BIGINT NOT NULL
);

CREATE TABLE reconciled_balances (
    account TEXT NOT NULL,
    asset_code TEXT NOT NULL,
    available BIGINT NOT NULL,
    frozen BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    PRIMARY KEY (account, asset_code)
);

CREATE TABLE reconciled_assets (
    asset_code TEXT PRIMARY KEY,
    total TEXT NOT NULL
);

INSERT INTO reconcile_checkpoints (name, position, entry_id, entries_checked, checked_at) VALUES ('incremental', 0, '', 0, 0);
