-- Correlation ids (docs/items.md, "Correlation ids"): the business event (a lottery draw, an
-- offer purchase, a bundle) that caused an item event, so that every item event of a
-- payout can be found later. '' when none; GrantItem and RevokeItem record one.
-- The index lists one correlation id's events oldest first (UUIDv7 ids) and covers only
-- the events that carry one.

ALTER TABLE item_events ADD COLUMN correlation_id TEXT NOT NULL DEFAULT '';

CREATE INDEX item_events_by_correlation ON item_events (correlation_id, id) WHERE correlation_id <> '';
