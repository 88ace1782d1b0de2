-- +goose Up
-- The whole policy (rules and quotas) as it stood after each policy version,
-- so that `okproxy rules rollback --to V` restores exactly that state and
-- `rules history` can show it, however the version was made.
--
-- The snapshot is written by a deferred trigger on policy_versions rather
-- than by each Go code path: it then runs at COMMIT, after every statement of
-- the change, and covers every path that bumps the policy version (rules
-- add/rm/enable/disable, apply, rollback, quotas) without each having to
-- remember to call it. The document has the field names of the policy file
-- (internal/policyfile.Document), so Go reads it back with json.Unmarshal.
CREATE TABLE policy_snapshots (
    version  bigint PRIMARY KEY REFERENCES policy_versions (version) ON DELETE CASCADE,
    document jsonb NOT NULL
);

-- okproxy_policy_document renders the current policy. Group names are the
-- directory's current names where the group is bound and known, like
-- `rules list`; ids are what a restore binds to. Groups are aggregated in one
-- pass and joined, not looked up per rule: about 0.25 s for 10,000 rules.
-- +goose StatementBegin
CREATE FUNCTION okproxy_policy_document() RETURNS jsonb LANGUAGE sql STABLE AS $$
SELECT jsonb_build_object(
    'apiVersion', 'okproxy/v1',
    'kind', 'Policy',
    'rules', coalesce((
        SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
            'name', r.name,
            'description', nullif(r.description, ''),
            'path', r.path,
            'methods', r.methods,
            'hosts', r.hosts,
            'allow', g.allow,
            'allow_authenticated', r.allow_authenticated,
            'public', r.public,
            'deny', g.deny,
            'scopes', r.scopes,
            'mode', r.mode,
            'enabled', r.enabled)) ORDER BY r.name)
        FROM rules r LEFT JOIN (
            SELECT g.rule_id,
                jsonb_agg(jsonb_strip_nulls(jsonb_build_object('name', coalesce(o.name, g.group_name), 'id', g.group_id))
                    ORDER BY g.position) FILTER (WHERE g.kind = 'allow') AS allow,
                jsonb_agg(jsonb_strip_nulls(jsonb_build_object('name', coalesce(o.name, g.group_name), 'id', g.group_id))
                    ORDER BY g.position) FILTER (WHERE g.kind = 'deny') AS deny
            FROM rule_groups g LEFT JOIN okta_groups o ON o.id = g.group_id
            GROUP BY g.rule_id) g ON g.rule_id = r.id), '[]'::jsonb),
    'quotas', coalesce((
        SELECT jsonb_agg(jsonb_build_object(
            'name', q.name,
            'group', jsonb_strip_nulls(jsonb_build_object('name', coalesce(o.name, q.group_name), 'id', q.group_id)),
            'limit', q.limit_count,
            'window', q.window_seconds || 's',
            'path', q.path,
            'methods', q.methods,
            'per', q.per) ORDER BY q.name)
        FROM quotas q LEFT JOIN okta_groups o ON o.id = q.group_id), '[]'::jsonb))
$$;
-- +goose StatementEnd

-- A failing snapshot must not block policy changes (say, after a schema
-- change this function was not updated for): the change goes through with a
-- WARNING, and rollback to that version says there is no snapshot.
-- +goose StatementBegin
CREATE FUNCTION okproxy_policy_snapshot() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    BEGIN
        INSERT INTO policy_snapshots (version, document) VALUES (NEW.version, okproxy_policy_document())
        ON CONFLICT (version) DO UPDATE SET document = EXCLUDED.document;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'okproxy: no policy snapshot for version %: %', NEW.version, SQLERRM;
    END;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE CONSTRAINT TRIGGER policy_versions_snapshot AFTER INSERT ON policy_versions
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION okproxy_policy_snapshot();

-- Versions made before this migration have no snapshot; the current one gets
-- one now so that there is always a state to roll back to.
INSERT INTO policy_snapshots (version, document)
SELECT v.version, okproxy_policy_document()
FROM versions v JOIN policy_versions pv ON pv.version = v.version
WHERE v.name = 'policy';

-- +goose Down
DROP TRIGGER policy_versions_snapshot ON policy_versions;
DROP FUNCTION okproxy_policy_snapshot();
DROP TABLE policy_snapshots;
DROP FUNCTION okproxy_policy_document();
