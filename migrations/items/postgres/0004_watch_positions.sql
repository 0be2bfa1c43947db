-- Stream positions (docs/items.md, "Watching events"): WatchItemEvents delivers events
-- ordered by (stream_position, id) and resumes after a cursor holding both. On
-- PostgreSQL the position is the writing transaction's id (pg_current_xact_id(), a
-- 64-bit xid8 that never wraps around); readers deliver only positions below the
-- oldest transaction still running, so no event can later commit behind a delivered
-- cursor. Existing events are all committed: position 0, ordered by id (UUIDv7).

ALTER TABLE item_events ADD COLUMN stream_position BIGINT NOT NULL DEFAULT 0;

ALTER TABLE item_events ALTER COLUMN stream_position DROP DEFAULT;

CREATE INDEX item_events_by_position ON item_events (stream_position, id);
