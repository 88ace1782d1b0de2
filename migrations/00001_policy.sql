-- +goose Up
-- Counters that replicas watch. Every change to rules, quotas or the directory
-- bumps one of them in the same transaction; the trigger NOTIFYs so running
-- replicas reload within a second (they also poll as a fallback).
CREATE TABLE versions (
    name    text PRIMARY KEY CHECK (name IN ('policy', 'directory')),
    version bigint NOT NULL DEFAULT 0
);
INSERT INTO versions (name) VALUES ('policy'), ('directory');

-- +goose StatementBegin
CREATE FUNCTION okproxy_notify_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('okproxy_changes', NEW.name || ':' || NEW.version);
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER versions_notify AFTER UPDATE ON versions
    FOR EACH ROW EXECUTE FUNCTION okproxy_notify_version();

-- One row per policy version: who made it and why.
CREATE TABLE policy_versions (
    version    bigint PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL
);

CREATE TABLE rules (
    id                  bigserial PRIMARY KEY,
    name                text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,62}$'),
    path                text NOT NULL CHECK (path LIKE '/%'),
    methods             text[] NOT NULL DEFAULT '{}',
    hosts               text[] NOT NULL DEFAULT '{}',
    public              boolean NOT NULL DEFAULT false,
    allow_authenticated boolean NOT NULL DEFAULT false,
    scopes              text[] NOT NULL DEFAULT '{}',
    description         text NOT NULL DEFAULT '',
    enabled             boolean NOT NULL DEFAULT true,
    mode                text NOT NULL DEFAULT 'enforce' CHECK (mode IN ('enforce', 'report')),
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (public AND allow_authenticated))
);

-- Group references of a rule. group_id is the Okta id once the group is known
-- to the synced directory (the binding survives renames); group_name is the
-- name as given, used while the group is unknown.
CREATE TABLE rule_groups (
    rule_id    bigint NOT NULL REFERENCES rules (id) ON DELETE CASCADE,
    kind       text NOT NULL CHECK (kind IN ('allow', 'deny')),
    position   int NOT NULL,
    group_id   text,
    group_name text NOT NULL CHECK (group_name <> ''),
    PRIMARY KEY (rule_id, kind, position)
);
CREATE INDEX rule_groups_group_id ON rule_groups (group_id) WHERE group_id IS NOT NULL;
CREATE INDEX rule_groups_group_name ON rule_groups (lower(group_name)) WHERE group_id IS NULL;

-- Every administrative change, with its actor and before/after values.
CREATE TABLE admin_events (
    id             bigserial PRIMARY KEY,
    time           timestamptz NOT NULL DEFAULT now(),
    actor          text NOT NULL,
    action         text NOT NULL,
    object_type    text NOT NULL,
    object_name    text NOT NULL,
    before         jsonb,
    after          jsonb,
    policy_version bigint
);
CREATE INDEX admin_events_time ON admin_events (time DESC);
CREATE INDEX admin_events_object ON admin_events (object_type, object_name, time DESC);

-- +goose Down
DROP TABLE admin_events;
DROP TABLE rule_groups;
DROP TABLE rules;
DROP TABLE policy_versions;
DROP TABLE versions;
DROP FUNCTION okproxy_notify_version();
