-- Resulting balances (docs/ledger.md, "Resulting balances"). Every posting records the
-- balance of its account and asset once its WHOLE entry is applied (available_after,
-- frozen_after: all postings of one entry on one balance record the same) and the
-- balance's version after it (balance_seq: 1 for the balance's first entry, +1 for each
-- later one); `balances.seq` is the balance's current version. The index serves the
-- balance of an account as of a version (later: GetBalance as_of, statements).
--
-- Existing ledgers are backfilled by replaying each balance's entries in order
-- (journal_entries.created_at, then entry id): numbered 1.. as balance_seq, with the
-- running sums of the available-bucket and frozen-bucket amounts as the after-values.
-- SQLite needs a default to add a NOT NULL column; every write path sets all three.

ALTER TABLE postings ADD COLUMN available_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE postings ADD COLUMN frozen_after BIGINT NOT NULL DEFAULT 0;
ALTER TABLE postings ADD COLUMN balance_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE balances ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

WITH per_entry AS (
    SELECT p.account, p.asset_code, p.entry_id, e.created_at,
        SUM(CASE WHEN p.bucket = 'available' THEN p.amount ELSE 0 END) AS available,
        SUM(CASE WHEN p.bucket = 'frozen' THEN p.amount ELSE 0 END) AS frozen
    FROM postings AS p JOIN journal_entries AS e ON e.id = p.entry_id
    GROUP BY p.account, p.asset_code, p.entry_id, e.created_at
), running AS (
    SELECT account, asset_code, entry_id,
        ROW_NUMBER() OVER w AS balance_seq,
        SUM(available) OVER w AS available_after,
        SUM(frozen) OVER w AS frozen_after
    FROM per_entry
    WINDOW w AS (PARTITION BY account, asset_code ORDER BY created_at, entry_id
        ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
UPDATE postings SET available_after = r.available_after, frozen_after = r.frozen_after, balance_seq = r.balance_seq
FROM running AS r
WHERE postings.entry_id = r.entry_id AND postings.account = r.account AND postings.asset_code = r.asset_code;

UPDATE balances SET seq = (
    SELECT COUNT(DISTINCT p.entry_id) FROM postings AS p
    WHERE p.account = balances.account AND p.asset_code = balances.asset_code
);

CREATE INDEX postings_by_balance_seq ON postings (account, asset_code, balance_seq);
