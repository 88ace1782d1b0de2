-- +goose Up
-- When PostgreSQL took each event in: the start of the inserting
-- transaction. `audit query --follow` follows this, not the event's own time,
-- so an event that becomes visible late (a batch replayed from serve's spool
-- after a database outage, minutes or hours after it happened) is still
-- printed. Inserts are bounded by the audit writer's insert timeout (10 s),
-- so an event is visible at most that long after its ingested_at.
--
-- now() is stable, so existing rows take the migration's time without a
-- table rewrite. Rows are appended in ingestion order within each
-- partition, which is what BRIN summarises well: the index is a few pages
-- per partition and costs next to nothing per insert.
ALTER TABLE audit_events ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX audit_events_ingested_at ON audit_events USING brin (ingested_at);

-- +goose Down
DROP INDEX IF EXISTS audit_events_ingested_at;
ALTER TABLE audit_events DROP COLUMN IF EXISTS ingested_at;
