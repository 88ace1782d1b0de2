#!/usr/bin/env bash
# PostgreSQL's time per audit row under each index layout: inserts 200,000
# rows, in time order, into a table shaped like audit_events with the index
# set of migration 00005 ((key, time DESC)), of 00009 ((key, time)), of 00010
# (00009 plus the ingested_at column and its BRIN index), and with the primary
# key alone. Two traffic shapes: "steady" is one caller on
# one path (what scripts/load.sh sends), "mixed" is 300 callers, 50 paths,
# 200 rules, 5 % denials. Prints ms per layout and µs per row; docs/PERFORMANCE.md
# has the numbers. Not part of `make test` (about two minutes).
#
#   scripts/audit-index-cost.sh [ROWS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/db.sh up)"
rows="${1:-200000}"; repeats="${2:-2}"
db=okproxy_index_cost
psql "$DATABASE_URL" -XqAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
url="$(printf '%s' "$DATABASE_URL" | sed -E "s#^(postgres(ql)?://[^/]+)/?[^?]*#\1/$db#")"
trap 'psql "$DATABASE_URL" -XqAt -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null' EXIT

psql "$url" -XqAt -v ON_ERROR_STOP=1 <<SQL
CREATE TABLE src_steady AS SELECT now() + (i || ' us')::interval AS time, gen_random_uuid() AS event_id,
  md5(i::text) AS request_id, 'replica-1' AS replica, 'GET' AS method, '127.0.0.1' AS host, '/bench' AS path,
  200 AS status, 'allow' AS decision, 'ok' AS reason, 7::bigint AS policy_version, ARRAY['bench'] AS rules,
  'bench' AS rule, '' AS shadow, 'load@example.com' AS subject, '00uRRHjmprEinlH5cYOA' AS user_id,
  'load@example.com' AS email, ARRAY['Finance', 'Team7', 'Team9'] AS groups, '127.0.0.1' AS client_ip,
  'wrk/4.2' AS user_agent, md5('j' || i) AS jti, '0oa123' AS client_id, 1.234::float8 AS latency_ms
  FROM generate_series(1, $rows) i;
CREATE TABLE src_mixed AS SELECT now() + (i || ' us')::interval AS time, gen_random_uuid() AS event_id,
  md5(i::text) AS request_id, 'replica-1' AS replica, 'GET' AS method, 'api.example.com' AS host,
  '/svc' || (i % 50) || '/items' AS path, CASE WHEN i % 20 = 0 THEN 403 ELSE 200 END AS status,
  CASE WHEN i % 20 = 0 THEN 'deny' ELSE 'allow' END AS decision, CASE WHEN i % 20 = 0 THEN 'forbidden' ELSE 'ok' END AS reason,
  7::bigint AS policy_version, ARRAY['svc-' || (i % 200)] AS rules, 'svc-' || (i % 200) AS rule, '' AS shadow,
  'user' || (i % 300) || '@example.com' AS subject, '00u' || lpad((i % 300)::text, 17, '0') AS user_id,
  'user' || (i % 300) || '@example.com' AS email, ARRAY['Finance', 'Team' || (i % 40), 'Team' || (i % 7)] AS groups,
  '10.0.' || (i % 250) || '.1' AS client_ip, 'client/1.0' AS user_agent, md5('j' || i) AS jti, '0oa123' AS client_id,
  1.234::float8 AS latency_ms
  FROM generate_series(1, $rows) i;
SQL

common="CREATE INDEX ON t USING gin (groups); CREATE INDEX ON t USING gin (rules);"
desc="$common CREATE INDEX ON t (lower(subject), time DESC);
 CREATE INDEX ON t (lower(email), time DESC) WHERE email <> '' AND lower(email) <> lower(subject);
 CREATE INDEX ON t (user_id, time DESC) WHERE user_id <> ''; CREATE INDEX ON t (status, time DESC);
 CREATE INDEX ON t (path text_pattern_ops, time DESC); CREATE INDEX ON t (decision, reason, time DESC);"
asc="$common CREATE INDEX ON t (lower(subject), time);
 CREATE INDEX ON t (lower(email), time) WHERE email <> '' AND lower(email) <> lower(subject);
 CREATE INDEX ON t (user_id, time) WHERE user_id <> ''; CREATE INDEX ON t (status, time);
 CREATE INDEX ON t (path text_pattern_ops, time); CREATE INDEX ON t (decision, reason, time);"

ingest="$asc ALTER TABLE t ADD COLUMN ingested_at timestamptz NOT NULL DEFAULT now();
 CREATE INDEX ON t USING brin (ingested_at);"

insert_ms() { # source, index statements
	psql "$url" -XqAt -v ON_ERROR_STOP=1 <<SQL | awk '/^Time:/ {print $2}' | tail -1
SET client_min_messages = warning;
DROP TABLE IF EXISTS t;
CREATE TABLE t (LIKE $1);
ALTER TABLE t ADD PRIMARY KEY (time, event_id);
$2
CHECKPOINT;
\timing on
INSERT INTO t SELECT * FROM $1 ORDER BY time;
SQL
}

echo "| traffic | indexes | ms for $rows rows | µs per row |"
echo "| --- | --- | --- | --- |"
for r in $(seq 1 "$repeats"); do
	for src in steady mixed; do
		for layout in pk desc asc ingest; do
			case $layout in
			pk) ix="" ; name="primary key only" ;;
			desc) ix="$desc"; name="00005: (key, time DESC)" ;;
			asc) ix="$asc"; name="00009: (key, time)" ;;
			ingest) ix="$ingest"; name="00010: 00009 + ingested_at, BRIN" ;;
			esac
			ms="$(insert_ms "src_$src" "$ix")"
			awk -v s="$src" -v n="$name" -v ms="$ms" -v rows="$rows" 'BEGIN {printf "| %s | %s | %.0f | %.1f |\n", s, n, ms, ms * 1000 / rows}'
		done
	done
done
