-- Imported instances (docs/import.md, "Item instances"): an instance brought in from an
-- existing economy carries one `imported` event.

ALTER TABLE item_events DROP CONSTRAINT item_events_event_type_check;

ALTER TABLE item_events ADD CONSTRAINT item_events_event_type_check
    CHECK (event_type IN ('granted', 'locked', 'unlocked', 'transferred', 'used', 'expired', 'revoked', 'imported'));
