-- Holds by reference (docs/ledger.md, "Holds"): ListHolds with `reference_prefix` lists
-- the holds whose reference starts with a prefix (e.g. `market:exchange:`, the holds of
-- the market's exchanges, for the consistency check) as the range
-- `reference >= prefix AND reference < next(prefix)`, which this index serves.
-- The range assumes byte order, so the column takes the "C" collation whatever the
-- database's default (a linguistic collation would order `a:b` after `a;`). Equality,
-- the only other use of the column, is the same under every deterministic collation.

ALTER TABLE holds ALTER COLUMN reference TYPE TEXT COLLATE "C";

CREATE INDEX holds_by_reference ON holds (reference, id);
