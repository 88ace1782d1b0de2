-- +goose Up
-- okta_as_of: Okta's clock (its Date header) when a sync started reading. The
-- next incremental sync asks Okta for users changed since then, because a
-- user's deactivation does not move any group's lastMembershipUpdated.
-- selection: the --group-filter/--group-search the run used.
ALTER TABLE sync_runs
    ADD COLUMN okta_as_of timestamptz,
    ADD COLUMN selection  jsonb NOT NULL DEFAULT '{}';
CREATE INDEX sync_runs_ok ON sync_runs (started_at DESC) WHERE status = 'ok';

-- +goose Down
DROP INDEX sync_runs_ok;
ALTER TABLE sync_runs DROP COLUMN selection, DROP COLUMN okta_as_of;
