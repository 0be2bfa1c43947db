-- Only the timeout job looks records up by status, and only `processing` ones
-- (docs/idempotency.md: processing older than 30 min -> failed). A partial index keeps just
-- those: completing a record removes its entry instead of moving it, and the index no
-- longer grows with the 7 days of finished records.
DROP INDEX idempotency_by_status;
CREATE INDEX idempotency_processing_by_age ON idempotency_records (updated_at) WHERE status = 'processing';
