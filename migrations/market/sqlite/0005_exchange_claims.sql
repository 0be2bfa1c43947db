-- One runner at a time per exchange (docs/market.md, "Exchanges"): the request that
-- created it, a retry, or a recovery worker claims it until `claimed_until` (ms; 0:
-- unclaimed) and every save of the runner compares that instant, so a runner whose claim
-- lapsed and was taken over saves nothing.
ALTER TABLE exchanges ADD COLUMN claimed_until BIGINT NOT NULL DEFAULT 0;
