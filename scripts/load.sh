#!/usr/bin/env bash
# Load comparison: okproxy (valid token, 200 rules, auditing on) against a bare
# httputil.ReverseProxy with the same transport settings, buffer pool and GOGC
# (serve sets 400) and the same upstream, in the same run, alternating A B A B so drift in the machine's
# load hits both. Prints a Markdown table for docs/PERFORMANCE.md.
#
#   make load                      # ROUNDS=3 DURATION=10s CONNS=64 THREADS=2
#   LAYOUT=pinned make load        # each proxy on CPU 0 alone; wrk, upstream, issuer, PostgreSQL on CPU 1
#   CPUPROBE=1 make load           # also CPU time per request of each process, per round
#   HEADERS=1 make load            # first: the upstream's cost of okproxy's identity headers
#   NOAUDIT=1 make load            # measurement only: okproxy built from HEAD with
#                                  # scripts/load-noaudit.patch, which drops every audit
#                                  # event, to see what the audit trail costs
#   PKONLY=1 make load             # measurement only: audit_events keeps its primary key
#                                  # and no other index, the cheapest row layout
#                                  # (audit queries would be slow); the lower bound of what
#                                  # any one-row-per-event index design can cost
#
# LAYOUT=shared (default) lets every process use every core, so PostgreSQL's
# work for the audit rows and the upstream's work for the identity headers
# are charged to okproxy's throughput. LAYOUT=pinned stands for a deployment
# where the proxy has a core of its own and the database and upstream run
# elsewhere: as long as CPU 1 is not the busier one, the round measures the
# proxy process alone. The script prints both CPUs' busy share per round so
# that can be checked.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${DATABASE_URL:?run through make load, which provides DATABASE_URL}"
LAYOUT="${LAYOUT:-shared}"; ROUNDS="${ROUNDS:-3}"; DURATION="${DURATION:-10s}"; CONNS="${CONNS:-64}"; THREADS="${THREADS:-2}"
command -v wrk >/dev/null || { echo "load: wrk is needed (apt-get install wrk)" >&2; exit 1; }
PXCPU=(); RESTCPU=()
case "$LAYOUT" in
shared) ;;
pinned)
	[ "$(nproc)" -ge 2 ] || { echo "load: LAYOUT=pinned needs 2 CPUs" >&2; exit 2; }
	command -v taskset >/dev/null || { echo "load: LAYOUT=pinned needs taskset (util-linux)" >&2; exit 1; }
	PXCPU=(taskset -c 0); RESTCPU=(taskset -c 1) ;;
*) echo "load: LAYOUT must be shared or pinned, not $LAYOUT" >&2; exit 2 ;;
esac

# ticks PATTERN: CPU time (utime+stime, clock ticks) of the processes matching PATTERN.
ticks() { local t=0 p s; for p in $(pgrep -f "$1"); do s=$(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0); t=$((t + s)); done; echo "$t"; }
# busy: per-CPU busy and total jiffies for cpu0 and cpu1.
busy() { awk '/^cpu[01] / {printf "%d %d ", $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

free_port() {
	local p
	while :; do
		p=$(( 20000 + (RANDOM % 20000) ))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}
work="$(mktemp -d)"; pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"
	# Give the database back all CPUs.
	if [ "$LAYOUT" = pinned ]; then for p in $(pgrep -x postgres); do taskset -a -p -c "0-$(( $(nproc) - 1 ))" "$p" >/dev/null 2>&1 || true; done; fi
}
trap cleanup EXIT

psql "$DATABASE_URL" -XqAt -c "DROP DATABASE IF EXISTS okproxy_load WITH (FORCE)" -c "CREATE DATABASE okproxy_load" >/dev/null
export OKPROXY_DATABASE_URL
OKPROXY_DATABASE_URL="$(printf '%s' "$DATABASE_URL" | sed -E 's#^(postgres(ql)?://[^/]+)/?[^?]*#\1/okproxy_load#')"
export OKPROXY_ACTOR=load
bin/okproxy migrate up >/dev/null
if [ -n "${PKONLY:-}" ]; then
	psql "$OKPROXY_DATABASE_URL" -XqAt -v ON_ERROR_STOP=1 -c "DO \$\$ DECLARE i text; BEGIN
		FOR i IN SELECT indexname FROM pg_indexes WHERE tablename = 'audit_events' AND indexname NOT LIKE '%pkey' LOOP
			EXECUTE format('DROP INDEX %I', i); END LOOP; END \$\$" >/dev/null
	echo "load: PKONLY=1: audit_events has its primary key alone ($(psql "$OKPROXY_DATABASE_URL" -XqAt -c "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'audit_events%'") indexes left over all partitions)" >&2
fi

SERVE_BIN=bin/okproxy
if [ -n "${NOAUDIT:-}" ]; then
	# Never a product build: the committed tree at HEAD plus the patch, built apart.
	git archive --format=tar HEAD | tar -x -C "$work" --one-top-level=src
	patchfile="$PWD/scripts/load-noaudit.patch"
	(cd "$work/src" && git apply -p1 "$patchfile" && go build -o "$work/okproxy-noaudit" ./cmd/okproxy)
	SERVE_BIN="$work/okproxy-noaudit"
	echo "load: NOAUDIT=1: okproxy serve drops every audit event (scripts/load-noaudit.patch)" >&2
fi

okta_port=$(free_port); up_port=$(free_port); px_port=$(free_port); adm_port=$(free_port); bare_port=$(free_port)
if [ "$LAYOUT" = pinned ]; then
	# The running cluster: the postmaster's new backends inherit its CPU.
	for p in $(pgrep -x postgres); do taskset -a -p -c 1 "$p" >/dev/null; done
fi
"${RESTCPU[@]}" bin/fakeokta --listen "127.0.0.1:$okta_port" >/dev/null 2>&1 & pids+=($!)
"${RESTCPU[@]}" bin/devtool upstream --listen "127.0.0.1:$up_port" 2>/dev/null & pids+=($!)
GOGC=400 "${PXCPU[@]}" bin/devtool bareproxy --listen "127.0.0.1:$bare_port" --upstream "http://127.0.0.1:$up_port" 2>/dev/null & pids+=($!)
for i in $(seq 1 100); do curl -fsS "http://127.0.0.1:$okta_port/oauth2/default/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done

# 200 rules: 199 on other services' paths and groups, one that grants /bench.
for i in $(seq 1 199); do
	bin/okproxy rules add "svc-$i" --path "/svc$i/**" --method GET --allow "Team$i" --deny "Contractors" 2>/dev/null >/dev/null
done
bin/okproxy rules add bench --path /bench --method GET --allow Finance 2>/dev/null >/dev/null

"${PXCPU[@]}" "$SERVE_BIN" serve --upstream "http://127.0.0.1:$up_port" --issuer "http://127.0.0.1:$okta_port/oauth2/default" \
	--audience api://default --listen "127.0.0.1:$px_port" --admin-listen "127.0.0.1:$adm_port" \
	--audit-spool-dir "$work/spool" --log-level warn ${SERVE_FLAGS:-} 2>"$work/serve.log" & pids+=($!)
for i in $(seq 1 200); do curl -fsS "http://127.0.0.1:$adm_port/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN="$(curl -fsS "http://127.0.0.1:$okta_port/test/token?sub=load@example.com&groups=Finance,Team7,Team9&ttl=2h")"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$px_port/bench")
[ "$code" = 200 ] || { echo "load: okproxy answered $code to the benchmark request" >&2; cat "$work/serve.log" >&2; exit 1; }

run_wrk() { # name url [token]
	local out
	if [ -n "${3:-}" ]; then
		out="$("${RESTCPU[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $3" "$2")"
	else
		out="$("${RESTCPU[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$2")"
	fi
	local rps p99 non2xx
	rps="$(printf '%s\n' "$out" | awk '/Requests\/sec/ {print $2}')"
	p99="$(printf '%s\n' "$out" | awk '$1 == "99%" {print $2}')"
	non2xx="$(printf '%s\n' "$out" | awk '/Non-2xx/ {print $5}')"
	local n
	n="$(printf '%s\n' "$out" | awk '/requests in/ {print $1}')"
	printf '%s %s %s %s %s\n' "$1" "$rps" "$p99" "${non2xx:-0}" "$n"
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
if [ -n "${HEADERS:-}" ]; then
	# What the identity headers cost the upstream itself: wrk straight at the
	# upstream with the headers a bare proxy sends, then with those okproxy
	# adds (X-Request-Id, X-Okproxy-User, -User-Id, -Groups, -Rule), A B A B.
	fwd=(-H "Authorization: Bearer $TOKEN" -H "X-Forwarded-For: 127.0.0.1" -H "X-Forwarded-Host: 127.0.0.1" -H "X-Forwarded-Proto: http")
	ident=(-H "X-Request-Id: 5f0c3e1a9b7d4c2e8f6a1b3c5d7e9f01" -H "X-Okproxy-User: load@example.com" -H "X-Okproxy-User-Id: 00uRRHjmprEinlH5cYOA" -H "X-Okproxy-Groups: Finance,Team7,Team9" -H "X-Okproxy-Rule: bench")
	echo "| upstream request headers | requests in 5 s | upstream CPU µs/req |"
	echo "| --- | --- | --- |"
	for r in 1 2 3 4 5 6; do
		for mode in bare-proxy okproxy; do
			extra=(); [ "$mode" = okproxy ] && extra=("${ident[@]}")
			u0=$(ticks "devtool upstream")
			n=$("${RESTCPU[@]}" wrk -t"$THREADS" -c"$CONNS" -d5s "${fwd[@]}" "${extra[@]}" "http://127.0.0.1:$up_port/bench" | awk '/requests in/ {print $1}')
			echo "| as from $mode | $n | $(( ($(ticks "devtool upstream") - u0) * 10000 / n )) |"
		done
	done
	echo
fi
round() { # name port process-pattern
	local c0 p0 u0 g0 line c1
	c0=$(busy); p0=$(ticks "$3"); u0=$(ticks "devtool upstream"); g0=$(ticks postgres)
	line=$(run_wrk "$1" "http://127.0.0.1:$2/bench" "$TOKEN")
	c1=$(busy)
	echo "$line" >>"$results"
	set -- $line $(( $(ticks "$3") - p0 )) $(( $(ticks "devtool upstream") - u0 )) $(( $(ticks postgres) - g0 )) $c0 $c1
	# $5 requests, $6..$8 ticks of proxy/upstream/postgres, $9..$12 busy/total before, $13..$16 after
	awk -v n="$1" -v req="$5" -v px="$6" -v up="$7" -v pg="$8" -v b0="$9" -v t0="${10}" -v b1="${11}" -v t1="${12}" \
		-v e0="${13}" -v f0="${14}" -v e1="${15}" -v f1="${16}" -v probe="${CPUPROBE:-}" 'BEGIN {
		printf "%s %.0f%% %.0f%%", n, 100 * (e0 - b0) / (f0 - t0), 100 * (e1 - b1) / (f1 - t1)
		if (probe != "") printf " %.0f %.0f %.0f", px * 1e6 / 100 / req, up * 1e6 / 100 / req, pg * 1e6 / 100 / req
		printf "\n"
	}' >>"$work/cpu"
}
for r in $(seq 1 "$ROUNDS"); do
	round bare "$bare_port" "devtool bareproxy"
	prof=""
	if [ -n "${PROFILE:-}" ]; then curl -s -o "$PROFILE" "http://127.0.0.1:$adm_port/debug/pprof/profile?seconds=4" & prof=$!; fi
	round okproxy "$px_port" "serve --upstream"
	if [ -n "$prof" ]; then wait "$prof" || true; fi
done

echo "wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds alternating bare/okproxy, LAYOUT=$LAYOUT${NOAUDIT:+, NOAUDIT=1 (serve drops every audit event)}${PKONLY:+, PKONLY=1 (audit_events: primary key only)}, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| round | bare req/s | bare p99 | okproxy req/s | okproxy p99 | okproxy/bare |"
echo "| --- | --- | --- | --- | --- | --- |"
awk '
	$1 == "bare" { b[++nb] = $2; bp[nb] = $3; if ($4 > 0) bad = 1 }
	$1 == "okproxy" { o[++no] = $2; op[no] = $3; if ($4 > 0) bad = 1 }
	END {
		for (i = 1; i <= nb; i++) { printf "| %d | %.0f | %s | %.0f | %s | %.3f |\n", i, b[i], bp[i], o[i], op[i], o[i] / b[i]; sb += b[i]; so += o[i]; r[i] = o[i] / b[i] }
		printf "| all | %.0f | | %.0f | | **%.3f** |\n", sb / nb, so / no, so / sb
		# The median round is less swayed than the total by one round the
		# machine slowed down for one side only.
		for (i = 1; i <= nb; i++) for (j = i + 1; j <= nb; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
		m = (nb % 2) ? r[(nb + 1) / 2] : (r[nb / 2] + r[nb / 2 + 1]) / 2
		printf "| median round | | | | | %.3f |\n", m
		if (bad) print "\nWARNING: some responses were not 2xx"
	}' "$results"
# Every answered request must have its audit row (SPEC §6): compare the
# proxy's own count of answered requests with the rows once the writer has
# flushed (it batches for up to 250 ms).
answered=$(curl -fsS "http://127.0.0.1:$adm_port/metrics" | awk '/^okproxy_requests_total/ {n += $2} END {printf "%d", n}')
events=0
for i in $(seq 1 50); do
	events=$(psql "$OKPROXY_DATABASE_URL" -XqAt -c "SELECT count(*) FROM audit_events")
	[ "$events" -ge "$answered" ] && break
	sleep 0.2
done
echo
echo "requests okproxy answered (okproxy_requests_total): $answered; audit events written: $events"
if [ -z "${NOAUDIT:-}" ] && [ "$events" != "$answered" ]; then echo "WARNING: audit events and answered requests differ"; fi
dropped=$(curl -fsS "http://127.0.0.1:$adm_port/metrics" | awk '/^okproxy_audit_events_dropped_total/ {print $2}')
echo "okproxy_audit_events_dropped_total: ${dropped:-n/a}"
echo
if [ -n "${CPUPROBE:-}" ]; then
	echo "| round | CPU0 busy | CPU1 busy | proxy µs/req | upstream µs/req | postgres µs/req |"
	echo "| --- | --- | --- | --- | --- | --- |"
	awk '{printf "| %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6}' "$work/cpu"
else
	echo "| round | CPU0 busy | CPU1 busy |"
	echo "| --- | --- | --- |"
	awk '{printf "| %s | %s | %s |\n", $1, $2, $3}' "$work/cpu"
fi
