-- +goose Up
CREATE TABLE quotas (
    id             bigserial PRIMARY KEY,
    name           text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    group_id       text,
    group_name     text NOT NULL,
    limit_count    bigint NOT NULL CHECK (limit_count > 0),
    window_seconds bigint NOT NULL CHECK (window_seconds > 0),
    path           text NOT NULL DEFAULT '/**' CHECK (path LIKE '/%'),
    methods        text[] NOT NULL DEFAULT '{}',
    per            text NOT NULL DEFAULT 'user' CHECK (per IN ('user', 'group')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Shared budget of one quota key (a user or a group) in one fixed window.
-- Replicas lease blocks of it with one atomic UPDATE; "granted" never exceeds
-- the quota's limit.
CREATE TABLE quota_windows (
    quota_id     bigint NOT NULL REFERENCES quotas (id) ON DELETE CASCADE,
    subject_key  text NOT NULL,
    window_start bigint NOT NULL,
    granted      bigint NOT NULL DEFAULT 0,
    used         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (quota_id, subject_key, window_start)
);
CREATE INDEX quota_windows_start ON quota_windows (window_start);

-- +goose Down
DROP TABLE quota_windows;
DROP TABLE quotas;
