-- Stream positions (docs/items.md, "Watching events"): WatchItemEvents delivers events
-- ordered by (stream_position, id) and resumes after a cursor holding both. On SQLite
-- the one writer serializes write transactions, so the position an insert takes inside
-- its transaction (the largest one so far plus one) is commit order. Existing events
-- take their rowid: the order they were inserted, i.e. committed.

ALTER TABLE item_events ADD COLUMN stream_position BIGINT NOT NULL DEFAULT 0;

UPDATE item_events SET stream_position = rowid;

CREATE INDEX item_events_by_position ON item_events (stream_position, id);
