-- History in O(page) (docs/ledger.md, "History filters"). ListTransactions pages an
-- account's entries newest first by (instant, entry id) with a keyset, reading an index
-- in that order so the first page of an account with millions of postings costs what a
-- light account's does:
-- - every asset of an account: `postings_by_account_instant (account, created_at,
--   entry_id)`, whose rows of one entry are adjacent (they share its instant), so the
--   page groups them without a sort; a period is a range of the same index;
-- - one asset: `postings_as_of (account, asset_code, created_at, balance_seq)` (0005);
-- - a correlation: `journal_entries_by_correlation` now orders the correlation's
--   entries by (created_at, id), the same order (partial on non-empty correlation ids;
--   queries repeat `correlation_id <> ''`).

CREATE INDEX postings_by_account_instant ON postings (account, created_at, entry_id);

DROP INDEX journal_entries_by_correlation;

CREATE INDEX journal_entries_by_correlation ON journal_entries (correlation_id, created_at, id)
    WHERE correlation_id <> '';
