-- +goose Up
-- Indexes for `okproxy audit query` over large windows. Each scalar filter
-- gets a (key, time DESC) index, so "newest N matching events" is an ordered
-- index scan per daily partition merged by time, cheap for rare and common
-- values alike; array filters (groups, rules) get GIN. Every index costs
-- ingest time, so only what a filter needs is here; measurements over
-- 1,000,000 events are in docs/audit.md.
--
-- IF [NOT] EXISTS throughout: an early draft of this file was applied in some
-- development databases; `okproxy migrate down` then `up` converges them.
DROP INDEX IF EXISTS audit_events_groups_lower;
DROP INDEX IF EXISTS audit_events_reason;
DROP FUNCTION IF EXISTS okproxy_lower_array(text[]);
CREATE INDEX IF NOT EXISTS audit_events_groups ON audit_events USING gin (groups);

-- The primary key (time, event_id) already serves ORDER BY time DESC.
DROP INDEX IF EXISTS audit_events_time;
-- Logins and emails compare case-insensitively.
DROP INDEX IF EXISTS audit_events_subject;
CREATE INDEX IF NOT EXISTS audit_events_subject_lower ON audit_events (lower(subject), time DESC);
-- Only rows whose email differs from the subject: the subject index finds
-- the others, and with Okta's login = email this index stays nearly empty.
DROP INDEX IF EXISTS audit_events_email_lower;
CREATE INDEX audit_events_email_lower ON audit_events (lower(email), time DESC)
    WHERE email <> '' AND lower(email) <> lower(subject);
CREATE INDEX IF NOT EXISTS audit_events_user_id ON audit_events (user_id, time DESC) WHERE user_id <> '';
-- --rule matches the matched rules, which include the granting or denying
-- one: GIN over rules replaces the btree over rule.
DROP INDEX IF EXISTS audit_events_rule;
CREATE INDEX IF NOT EXISTS audit_events_rules ON audit_events USING gin (rules);
CREATE INDEX IF NOT EXISTS audit_events_status ON audit_events (status, time DESC);
CREATE INDEX IF NOT EXISTS audit_events_path ON audit_events (path text_pattern_ops, time DESC);

-- +goose Down
DROP INDEX IF EXISTS audit_events_path;
DROP INDEX IF EXISTS audit_events_status;
DROP INDEX IF EXISTS audit_events_rules;
CREATE INDEX IF NOT EXISTS audit_events_rule ON audit_events (rule, time DESC);
DROP INDEX IF EXISTS audit_events_user_id;
DROP INDEX IF EXISTS audit_events_email_lower;
DROP INDEX IF EXISTS audit_events_subject_lower;
CREATE INDEX IF NOT EXISTS audit_events_subject ON audit_events (subject, time DESC);
CREATE INDEX IF NOT EXISTS audit_events_time ON audit_events (time DESC);
