-- Ledger history (docs/ledger.md, "Balances at an instant", "Statements", "History
-- filters"). Every posting records its entry's instant (`created_at`, ms, copied from
-- journal_entries by every write path) so the balance of an account and asset as of an
-- instant is one backward seek of `postings_as_of`: the posting of the balance with the
-- greatest (created_at, balance_seq) at or before the instant carries the balance after.
-- `journal_entries_by_correlation` serves ListTransactions by correlation id (only
-- entries that have one: queries repeat `correlation_id <> ''` so the partial index
-- applies).
--
-- Existing postings take their entry's instant; the default for the existing rows is
-- dropped afterwards: every write path sets the column.

ALTER TABLE postings ADD COLUMN created_at BIGINT NOT NULL DEFAULT 0;

UPDATE postings SET created_at = e.created_at FROM journal_entries AS e WHERE e.id = postings.entry_id;

ALTER TABLE postings ALTER COLUMN created_at DROP DEFAULT;

CREATE INDEX postings_as_of ON postings (account, asset_code, created_at, balance_seq);

CREATE INDEX journal_entries_by_correlation ON journal_entries (correlation_id, id) WHERE correlation_id <> '';
