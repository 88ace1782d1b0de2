-- +goose Up
-- Indexes for `okproxy audit query`: every filter has an index whose second
-- column is time, so "newest N matching events" is an ordered index scan per
-- daily partition merged by time, not a sort of everything that matches.
-- Measured over 1,000,000 events in docs/audit.md.

-- Group names compare case-insensitively (SPEC §3); lower-casing the array
-- through its text form is immutable for text[] and keeps the GIN index usable.
CREATE FUNCTION okproxy_lower_array(a text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$ SELECT lower(a::text)::text[] $$;

-- The primary key (time, event_id) already serves ORDER BY time DESC.
DROP INDEX audit_events_time;
-- Replaced by a case-insensitive index: logins and emails are.
DROP INDEX audit_events_subject;
DROP INDEX audit_events_groups;

CREATE INDEX audit_events_subject_lower ON audit_events (lower(subject), time DESC);
CREATE INDEX audit_events_email_lower ON audit_events (lower(email), time DESC) WHERE email <> '';
CREATE INDEX audit_events_user_id ON audit_events (user_id, time DESC) WHERE user_id <> '';
CREATE INDEX audit_events_groups_lower ON audit_events USING gin (okproxy_lower_array(groups));
CREATE INDEX audit_events_rules ON audit_events USING gin (rules);
CREATE INDEX audit_events_reason ON audit_events (reason, time DESC);
CREATE INDEX audit_events_status ON audit_events (status, time DESC);
CREATE INDEX audit_events_path ON audit_events (path text_pattern_ops, time DESC);

-- +goose Down
DROP INDEX audit_events_path;
DROP INDEX audit_events_status;
DROP INDEX audit_events_reason;
DROP INDEX audit_events_rules;
DROP INDEX audit_events_groups_lower;
DROP INDEX audit_events_user_id;
DROP INDEX audit_events_email_lower;
DROP INDEX audit_events_subject_lower;
CREATE INDEX audit_events_groups ON audit_events USING gin (groups);
CREATE INDEX audit_events_subject ON audit_events (subject, time DESC);
CREATE INDEX audit_events_time ON audit_events (time DESC);
DROP FUNCTION okproxy_lower_array(text[]);
