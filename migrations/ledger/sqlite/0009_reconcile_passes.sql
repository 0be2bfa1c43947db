-- The scheduled whole check (docs/ledger.md, "Reconciliation") runs in bounded chunks;
-- the position of the pass under way (a cursor; empty: none) survives restarts here,
-- with what the pass found so far. Replicas advance it with a compare-and-set on the
-- cursor, so each chunk is applied once.

CREATE TABLE reconcile_passes (
    name TEXT PRIMARY KEY,
    pass_cursor TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    findings BIGINT NOT NULL,
    balances_checked BIGINT NOT NULL,
    entries_checked BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

INSERT INTO reconcile_passes (name, pass_cursor, started_at, findings, balances_checked, entries_checked, updated_at)
VALUES ('scheduled', '', 0, 0, 0, 0, 0);

-- A chunk of the whole check reads the open holds of the balances it covers, by key.
CREATE INDEX holds_open_by_balance ON holds (account, asset_code) WHERE status = 'open';
