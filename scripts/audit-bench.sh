#!/usr/bin/env bash
# Measures `okproxy audit query` over a large audit table: loads N events
# (default 1,000,000, spread over 30 days) through the writer's COPY path, then
# times the typical filtered queries and prints each one's median/max latency
# and EXPLAIN ANALYZE plan (docs/audit.md has the numbers). Also runs the ingest
# and end-to-end writer benchmarks. Not part of `make test` (a few minutes).
#
#   scripts/audit-bench.sh [EVENTS]
#   PLANS=1 scripts/audit-bench.sh    also print every full plan
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/db.sh up)"
events="${1:-1}"
label="$events"; [ "$events" = 1 ] && label=1000000
echo "== query latency over $label events" >&2
OKPROXY_AUDIT_BENCH="$events" OKPROXY_AUDIT_BENCH_PLANS="${PLANS:-}" \
	go test -tags auditbench -count=1 -run '^$' -bench '^BenchmarkAuditQueryLatency1M$' -benchtime 1x -v -timeout 60m ./internal/store/
echo "== ingest (events/s per batch size) and the writer end to end" >&2
go test -count=1 -run '^$' -bench 'Ingest|Writer' -benchtime 200000x -timeout 60m ./internal/audit/
