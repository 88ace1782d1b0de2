#!/usr/bin/env bash
# Load comparison: okproxy (valid token, 200 rules, auditing on) against a bare
# httputil.ReverseProxy with the same transport settings, buffer pool and GOGC
# (serve sets 400) and the same upstream, in the same run, alternating A B A B so drift in the machine's
# load hits both. Prints a Markdown table for docs/PERFORMANCE.md.
#
#   make load                      # ROUNDS=3 DURATION=10s CONNS=64 THREADS=2
#   AUDIT=off make load            # okproxy without a database audit sink (spool only; for the audit cost)
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?run through make load, which provides DATABASE_URL}"
ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; THREADS="${THREADS:-2}"
command -v wrk >/dev/null || { echo "load: wrk is needed (apt-get install wrk)" >&2; exit 1; }

free_port() {
	local p
	while :; do
		p=$(( 20000 + (RANDOM % 20000) ))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
work="$(mktemp -d)"; pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

psql "$DATABASE_URL" -XqAt -c "DROP DATABASE IF EXISTS okproxy_load WITH (FORCE)" -c "CREATE DATABASE okproxy_load" >/dev/null
export OKPROXY_DATABASE_URL
OKPROXY_DATABASE_URL="$(printf '%s' "$DATABASE_URL" | sed -E 's#^(postgres(ql)?://[^/]+)/?[^?]*#\1/okproxy_load#')"
export OKPROXY_ACTOR=load
bin/okproxy migrate up >/dev/null

okta_port=$(free_port); up_port=$(free_port); px_port=$(free_port); adm_port=$(free_port); bare_port=$(free_port)
bin/fakeokta --listen "127.0.0.1:$okta_port" >/dev/null 2>&1 & pids+=($!)
bin/devtool upstream --listen "127.0.0.1:$up_port" 2>/dev/null & pids+=($!)
GOGC=400 bin/devtool bareproxy --listen "127.0.0.1:$bare_port" --upstream "http://127.0.0.1:$up_port" 2>/dev/null & pids+=($!)
for i in $(seq 1 100); do curl -fsS "http://127.0.0.1:$okta_port/oauth2/default/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done

# 200 rules: 199 on other services' paths and groups, one that grants /bench.
for i in $(seq 1 199); do
	bin/okproxy rules add "svc-$i" --path "/svc$i/**" --method GET --allow "Team$i" --deny "Contractors" 2>/dev/null >/dev/null
done
bin/okproxy rules add bench --path /bench --method GET --allow Finance 2>/dev/null >/dev/null

bin/okproxy serve --upstream "http://127.0.0.1:$up_port" --issuer "http://127.0.0.1:$okta_port/oauth2/default" \
	--audience api://default --listen "127.0.0.1:$px_port" --admin-listen "127.0.0.1:$adm_port" \
	--audit-spool-dir "$work/spool" --log-level warn ${SERVE_FLAGS:-} 2>"$work/serve.log" & pids+=($!)
for i in $(seq 1 200); do curl -fsS "http://127.0.0.1:$adm_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN="$(curl -fsS "http://127.0.0.1:$okta_port/test/token?sub=load@example.com&groups=Finance,Team7,Team9&ttl=2h")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$px_port/bench")
[ "$code" = 200 ] || { echo "load: okproxy answered $code to the benchmark request" >&2; cat "$work/serve.log" >&2; exit 1; }

run_wrk() { # name url [token]
	local out
	if [ -n "${3:-}" ]; then
		out="$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $3" "$2")"
	else
		out="$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")"
	fi
	local rps p99 non2xx
	rps="$(printf '%s\n' "$out" | awk '/Requests\/sec/ {print $2}')"
	p99="$(printf '%s\n' "$out" | awk '$1 == "99%" {print $2}')"
	non2xx="$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $5}')"
	printf '%s %s %s %s\n' "$1" "$rps" "$p99" "${non2xx:-0}"
}

# Warm both (connection pools, token cache, JIT-free but page cache etc.).
wrk -t1 -c8 -d2s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$bare_port/bench" >/dev/null
wrk -t1 -c8 -d2s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$px_port/bench" >/dev/null

results="$work/results"
if [ -n "${STRACE:-}" ]; then
	# Syscall counts per process over a fixed number of requests (diagnostics).
	for t in "bare $bare_port" "okproxy $px_port"; do
		set -- $t
		pid=$(pgrep -f "listen 127.0.0.1:$2" | head -1)
		timeout 8 strace -c -f -p "$pid" -o "$work/strace.$1" & st=$!
		sleep 1
		wrk -t2 -c32 -d5s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$2/bench" | awk '/requests in/ {print "'"$1"' requests:", $1}'
		wait $st || true
		grep -E "write|read|epoll|connect|total" "$work/strace.$1"
	done
fi
. /tmp/cpuprobe.sh 2>/dev/null || true
for r in $(seq 1 "$ROUNDS"); do
	if [ -n "${CPUPROBE:-}" ]; then b0=$(ticks "devtool bareproxy"); bu0=$(ticks "devtool upstream"); bw0=$(ticks "wrk"); fi
	run_wrk bare "http://127.0.0.1:$bare_port/bench" "$TOKEN" >>"$results"
	if [ -n "${CPUPROBE:-}" ]; then echo "cpu ticks during bare round: bareproxy $(( $(ticks 'devtool bareproxy')-b0 )) upstream $(( $(ticks 'devtool upstream')-bu0 ))" >&2; fi
	if [ -n "${CPUPROBE:-}" ]; then pg0=$(ticks "postgres"); px0=$(ticks "okproxy serve"); up0=$(ticks "devtool upstream"); fi
	prof=""
	if [ -n "${PROFILE:-}" ]; then curl -s -o "$PROFILE" "http://127.0.0.1:$adm_port/debug/pprof/profile?seconds=4" & prof=$!; fi
	run_wrk okproxy "http://127.0.0.1:$px_port/bench" "$TOKEN" >>"$results"
	if [ -n "$prof" ]; then wait "$prof" || true; fi
	if [ -n "${CPUPROBE:-}" ]; then echo "cpu ticks during okproxy round: postgres $(( $(ticks postgres)-pg0 )) okproxy $(( $(ticks 'okproxy serve')-px0 )) upstream $(( $(ticks 'devtool upstream')-up0 ))" >&2; fi
done

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds alternating bare/okproxy, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| round | bare req/s | bare p99 | okproxy req/s | okproxy p99 | okproxy/bare |"
echo "| --- | --- | --- | --- | --- | --- |"
awk '
	$1 == "bare" { b[++nb] = $2; bp[nb] = $3; if ($4 > 0) bad = 1 }
	$1 == "okproxy" { o[++no] = $2; op[no] = $3; if ($4 > 0) bad = 1 }
	END {
		for (i = 1; i <= nb; i++) { printf "| %d | %.0f | %s | %.0f | %s | %.3f |\n", i, b[i], bp[i], o[i], op[i], o[i] / b[i]; sb += b[i]; so += o[i] }
		printf "| all | %.0f | | %.0f | | **%.3f** |\n", sb / nb, so / no, so / sb
		if (bad) print "\nWARNING: some responses were not 2xx"
	}' "$results"
sleep 1
events=$(psql "$OKPROXY_DATABASE_URL" -XqAt -c "SELECT count(*) FROM audit_events")
echo
echo "audit events written during the run: $events"
dropped=$(curl -fsS "http://127.0.0.1:$adm_port/metrics" | awk '/^okproxy_audit_dropped_total/ {print $2}')
echo "okproxy_audit_dropped_total: ${dropped:-n/a}"
