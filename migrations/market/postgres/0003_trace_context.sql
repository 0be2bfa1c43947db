-- The W3C trace context (`traceparent`) of the request that made an escrow return owed,
-- so the delivery, however late, joins that request's trace (docs/operations.md). Empty when
-- the request was not traced (or the listing expired in a background job).
ALTER TABLE market_outbox ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
