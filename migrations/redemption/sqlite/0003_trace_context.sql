-- The W3C trace context (`traceparent`) of the request that made a delivery owed, so the
-- delivery, however late, joins that request's trace (docs/operations.md). Empty when the
-- request was not traced.
ALTER TABLE redemption_outbox ADD COLUMN trace_context TEXT NOT NULL DEFAULT '';
