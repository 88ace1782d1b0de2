-- +goose Up
-- What the quota lease protocol (docs/quotas.md) needs beyond 00003:
--
-- last_grant: the grant of the most recent lease statement on the row. A
-- lease is one INSERT … ON CONFLICT DO UPDATE … RETURNING, and RETURNING
-- only sees the new row; writing the grant into the row is how that one
-- statement reports what it granted without a second round trip.
--
-- subject: a human label for subject_key (the login of a per-user key, the
-- group name of a per-group key) for `okproxy quotas usage`.
--
-- updated_at: when a replica last leased, returned or reported on the row.
ALTER TABLE quota_windows
    ADD COLUMN last_grant bigint NOT NULL DEFAULT 0,
    ADD COLUMN subject    text NOT NULL DEFAULT '',
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT quota_windows_counts CHECK (granted >= 0 AND used >= 0 AND last_grant >= 0);

-- +goose Down
ALTER TABLE quota_windows
    DROP CONSTRAINT quota_windows_counts,
    DROP COLUMN updated_at,
    DROP COLUMN subject,
    DROP COLUMN last_grant;
