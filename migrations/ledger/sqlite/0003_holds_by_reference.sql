-- Holds by reference (docs/ledger.md, "Holds"): ListHolds with `reference_prefix` lists
-- the holds whose reference starts with a prefix (e.g. `market:exchange:`, the holds of
-- the market's exchanges, for the consistency check) as the range
-- `reference >= prefix AND reference < next(prefix)`, which this index serves. SQLite
-- compares TEXT byte by byte (BINARY collation), the order the range assumes.

CREATE INDEX holds_by_reference ON holds (reference, id);
