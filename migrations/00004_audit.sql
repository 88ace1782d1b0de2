-- +goose Up
-- One row per request the proxy answered. Partitioned by day so that
-- retention is DROP TABLE of whole partitions and inserts touch one small
-- partition; event_id makes replays from the local spool idempotent.
CREATE TABLE audit_events (
    time           timestamptz NOT NULL,
    event_id       uuid NOT NULL,
    request_id     text NOT NULL DEFAULT '',
    replica        text NOT NULL DEFAULT '',
    method         text NOT NULL DEFAULT '',
    host           text NOT NULL DEFAULT '',
    path           text NOT NULL DEFAULT '',
    status         int NOT NULL,
    decision       text NOT NULL CHECK (decision IN ('allow', 'deny', 'error')),
    reason         text NOT NULL,
    policy_version bigint NOT NULL DEFAULT 0,
    rules          text[] NOT NULL DEFAULT '{}',
    rule           text NOT NULL DEFAULT '',
    shadow         text NOT NULL DEFAULT '',
    subject        text NOT NULL DEFAULT '',
    user_id        text NOT NULL DEFAULT '',
    email          text NOT NULL DEFAULT '',
    groups         text[] NOT NULL DEFAULT '{}',
    client_ip      text NOT NULL DEFAULT '',
    user_agent     text NOT NULL DEFAULT '',
    jti            text NOT NULL DEFAULT '',
    client_id      text NOT NULL DEFAULT '',
    latency_ms     double precision NOT NULL DEFAULT 0,
    PRIMARY KEY (time, event_id)
) PARTITION BY RANGE (time);

CREATE INDEX audit_events_time ON audit_events (time DESC);
CREATE INDEX audit_events_subject ON audit_events (subject, time DESC);
CREATE INDEX audit_events_decision ON audit_events (decision, reason, time DESC);
CREATE INDEX audit_events_rule ON audit_events (rule, time DESC);
CREATE INDEX audit_events_groups ON audit_events USING gin (groups);

-- A catch-all so that an event is never refused for lack of a partition.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

-- okproxy_audit_partitions creates the daily partitions from the day of
-- "since" for "days" days (UTC), skipping existing ones; rows already in the
-- default partition for such a day are moved into the new partition.
-- +goose StatementBegin
CREATE FUNCTION okproxy_audit_partitions(since timestamptz, days int) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    pname   text;
    created int := 0;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := (since AT TIME ZONE 'UTC')::date + i;
        pname := 'audit_events_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(pname) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext('okproxy_audit_partitions'));
            IF to_regclass(pname) IS NULL THEN
                EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS okproxy_moved (LIKE audit_events) ON COMMIT DROP');
                EXECUTE format('WITH m AS (DELETE FROM audit_events_default WHERE time >= %L AND time < %L RETURNING *) INSERT INTO okproxy_moved SELECT * FROM m',
                    (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
                EXECUTE format('CREATE TABLE %I PARTITION OF audit_events FOR VALUES FROM (%L) TO (%L)',
                    pname, (d::timestamp AT TIME ZONE 'UTC'), ((d + 1)::timestamp AT TIME ZONE 'UTC'));
                EXECUTE 'INSERT INTO audit_events SELECT * FROM okproxy_moved';
                EXECUTE 'TRUNCATE okproxy_moved';
                created := created + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN created;
END;
$$;
-- +goose StatementEnd

SELECT okproxy_audit_partitions(now() - interval '1 day', 9);

-- +goose Down
DROP TABLE audit_events;
DROP FUNCTION okproxy_audit_partitions(timestamptz, int);
