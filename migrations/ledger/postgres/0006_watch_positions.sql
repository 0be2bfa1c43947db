-- Stream positions of journal entries (docs/streams.md): WatchEntries delivers entries
-- ordered by (stream_position, id) and resumes after a cursor holding both. A new
-- entry's position is its writing transaction's id (pg_current_xact_id(), a 64-bit
-- xid8 that never wraps around), set by the column default so no write path names it;
-- readers deliver only positions below the oldest transaction still running, so no
-- entry can later commit behind a delivered cursor. Existing entries are all committed:
-- position 0, ordered by id (UUIDv7). On SQLite the position is the rowid (one writer).

ALTER TABLE journal_entries ADD COLUMN stream_position BIGINT NOT NULL DEFAULT 0;

ALTER TABLE journal_entries ALTER COLUMN stream_position SET DEFAULT pg_current_xact_id()::text::bigint;

CREATE INDEX journal_entries_by_position ON journal_entries (stream_position, id);
