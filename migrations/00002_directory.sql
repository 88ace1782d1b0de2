-- +goose Up
-- The Okta directory as last synced by `okproxy groups sync`.
CREATE TABLE okta_groups (
    id                      text PRIMARY KEY,
    name                    text NOT NULL,
    type                    text NOT NULL,
    description             text NOT NULL DEFAULT '',
    last_updated            timestamptz,
    last_membership_updated timestamptz,
    synced_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX okta_groups_name ON okta_groups (lower(name));

CREATE TABLE okta_users (
    id         text PRIMARY KEY,
    login      text NOT NULL,
    email      text NOT NULL DEFAULT '',
    status     text NOT NULL,
    first_name text NOT NULL DEFAULT '',
    last_name  text NOT NULL DEFAULT '',
    department text NOT NULL DEFAULT '',
    title      text NOT NULL DEFAULT '',
    synced_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX okta_users_login ON okta_users (lower(login));

CREATE TABLE okta_memberships (
    group_id text NOT NULL REFERENCES okta_groups (id) ON DELETE CASCADE,
    user_id  text NOT NULL REFERENCES okta_users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX okta_memberships_user ON okta_memberships (user_id);

CREATE TABLE okta_group_rules (
    id         text PRIMARY KEY,
    name       text NOT NULL,
    status     text NOT NULL,
    expression text NOT NULL DEFAULT '',
    group_ids  text[] NOT NULL DEFAULT '{}',
    synced_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE sync_runs (
    id          bigserial PRIMARY KEY,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    status      text NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'aborted', 'dry_run')),
    full_sync   boolean NOT NULL DEFAULT false,
    actor       text NOT NULL DEFAULT '',
    counts      jsonb NOT NULL DEFAULT '{}',
    error       text NOT NULL DEFAULT ''
);
CREATE INDEX sync_runs_started ON sync_runs (started_at DESC);

-- +goose Down
DROP TABLE sync_runs;
DROP TABLE okta_group_rules;
DROP TABLE okta_memberships;
DROP TABLE okta_users;
DROP TABLE okta_groups;
