#!/usr/bin/env bash
# make demo: okproxy end to end on this machine.
#
# Starts (all on loopback): a fake Okta authorization server, a sample upstream
# API and `okproxy serve` against its own database (okproxy_demo on the server
# of DATABASE_URL, which `make demo` provides through scripts/db.sh); adds
# sample rules with the CLI; then walks through allowed and refused calls,
# printing each curl and its result. Stays up for your own calls until Ctrl-C,
# or exits 0 after the walkthrough with DEMO_EXIT=1.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${DATABASE_URL:?DATABASE_URL must be set (run make demo, which provides one)}"
for bin in bin/okproxy bin/fakeokta bin/devtool; do
	[ -x "$bin" ] || { echo "demo: $bin missing (run make demo, which builds it)" >&2; exit 1; }
done
if ! command -v curl >/dev/null; then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		echo "demo: installing curl with apt-get" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null 2>&1 ||
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null; }
	fi
	command -v curl >/dev/null || { echo "demo: curl is needed (apt-get install curl)" >&2; exit 1; }
fi
command -v psql >/dev/null || { echo "demo: psql is needed (apt-get install postgresql-client)" >&2; exit 1; }

bold() { printf '\033[1m%s\033[0m\n' "$*"; }
free_port() {
	local p
	while :; do
		p=$(( 20000 + (RANDOM % 20000) ))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

work="$(mktemp -d)"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A database of its own, so the demo never touches other data on that server.
case "$DATABASE_URL" in
postgres://* | postgresql://*) ;;
*) echo "demo: DATABASE_URL must be a postgres:// URL" >&2; exit 1 ;;
esac
psql "$DATABASE_URL" -XqAt -c "DROP DATABASE IF EXISTS okproxy_demo WITH (FORCE)" -c "CREATE DATABASE okproxy_demo" >/dev/null
export OKPROXY_DATABASE_URL
OKPROXY_DATABASE_URL="$(printf '%s' "$DATABASE_URL" | sed -E 's#^(postgres(ql)?://[^/]+)/?[^?]*#\1/okproxy_demo#')"
export OKPROXY_ACTOR="demo"

okta_port=$(free_port); up_port=$(free_port); proxy_port=$(free_port); admin_port=$(free_port)
okta="http://127.0.0.1:$okta_port"
issuer="$okta/oauth2/default"
proxy="http://127.0.0.1:$proxy_port"

bold "== starting the fake Okta issuer, a sample upstream API and okproxy serve"
bin/fakeokta --listen "127.0.0.1:$okta_port" >"$work/fakeokta.out" 2>"$work/fakeokta.log" &
pids+=($!)
bin/devtool upstream --listen "127.0.0.1:$up_port" 2>"$work/upstream.log" &
pids+=($!)
for i in $(seq 1 100); do curl -fsS "$issuer/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done

bin/okproxy migrate up >/dev/null
bold "== adding rules with the CLI"
run() { printf '$ %s\n' "$*"; "$@"; }
run bin/okproxy rules add billing-read --path '/billing/**' --method GET --allow Finance --allow Auditors 2>/dev/null
run bin/okproxy rules add no-contractors --path '/billing/**' --deny Contractors 2>/dev/null
run bin/okproxy rules add health --path /healthz --method GET --public
run bin/okproxy rules add me --path /me --allow-authenticated --scope profile:read
run bin/okproxy rules add new-export --path '/export/**' --allow Finance --mode report 2>/dev/null
echo
run bin/okproxy rules list
echo

bin/okproxy serve --upstream "http://127.0.0.1:$up_port" --issuer "$issuer" --audience api://default \
	--listen "127.0.0.1:$proxy_port" --admin-listen "127.0.0.1:$admin_port" \
	--audit-spool-dir "$work/spool" --replica demo-1 2>"$work/serve.log" &
pids+=($!)
for i in $(seq 1 200); do
	curl -fsS "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1 && break
	sleep 0.1
	if [ "$i" = 200 ]; then echo "demo: okproxy did not become ready; its log:" >&2; cat "$work/serve.log" >&2; exit 1; fi
done
bold "okproxy is serving on $proxy ($(curl -fsS "http://127.0.0.1:$admin_port/readyz"))"
echo

token() { curl -fsS "$okta/test/token?sub=$1&groups=$2${3:+&scp=$3}"; }
ALICE=$(token alice@example.com Finance)
CARL=$(token carl@example.com Finance,Contractors)
ERIN=$(token erin@example.com Engineering)
# The same token as Alice's with one character of its payload changed.
payload=$(printf '%s' "$ALICE" | cut -d. -f2)
flip=$([ "${payload:10:1}" = "A" ] && echo B || echo A)
FORGED="$(printf '%s' "$ALICE" | cut -d. -f1).${payload:0:10}${flip}${payload:11}.$(printf '%s' "$ALICE" | cut -d. -f3)"
export ALICE CARL ERIN

failures=0
step() { # title, expected status, curl args...
	local title="$1" want="$2"; shift 2
	bold "-- $title"
	printf '$ curl -s'; printf " %q" "$@" | sed -E 's/eyJ[A-Za-z0-9_.-]+/$TOKEN/g'; echo
	local out code
	out="$(curl -s -w '\n%{http_code}' "$@")"
	code="${out##*$'\n'}"
	printf '%s\n' "${out%$'\n'*}"
	if [ "$code" = "$want" ]; then printf '=> HTTP %s (as expected)\n\n' "$code"; else printf '=> HTTP %s, EXPECTED %s\n\n' "$code" "$want"; failures=$((failures + 1)); fi
}

step "Alice (Finance) reads an invoice: allowed by billing-read" 200 -H "Authorization: Bearer $ALICE" "$proxy/billing/invoices/42"
step "Carl (Finance + Contractors): the deny list wins" 403 -H "Authorization: Bearer $CARL" "$proxy/billing/invoices/42"
step "Erin (Engineering): no rule grants her /billing" 403 -H "Authorization: Bearer $ERIN" "$proxy/billing/invoices/42"
step "A tampered token is refused" 401 -H "Authorization: Bearer $FORGED" "$proxy/billing/invoices/42"
step "No token on a protected route" 401 "$proxy/billing/invoices/42"
step "A path trick (/billing/%2e%2e/admin) is refused before any rule runs" 400 --path-as-is -H "Authorization: Bearer $ALICE" "$proxy/billing/%2e%2e/admin"
step "A public route needs no token" 200 "$proxy/healthz"

bold "-- why was Carl refused? (okproxy rules test evaluates exactly as serve does)"
run bin/okproxy rules test --method GET --path /billing/invoices/42 --groups Finance,Contractors || true
echo
if bin/okproxy audit query --help >/dev/null 2>&1; then
	sleep 1
	bold "-- the audit trail of those calls"
	run bin/okproxy audit query --since 5m --limit 10 || true
	echo
fi

if [ "$failures" -gt 0 ]; then
	echo "demo: $failures step(s) did not behave as expected; okproxy's log:" >&2
	tail -20 "$work/serve.log" >&2
	exit 1
fi
bold "== walkthrough complete: every call behaved as expected"
if [ -n "${DEMO_EXIT:-}" ]; then exit 0; fi

cat <<EOF

okproxy keeps running. Try your own calls in another shell:

  eval "\$(scripts/db.sh up)"
  export OKPROXY_DATABASE_URL="\$(echo "\$DATABASE_URL" | sed -E 's#^(postgres(ql)?://[^/]+)/?[^?]*#\\1/okproxy_demo#')"
  TOKEN=\$(curl -s '$okta/test/token?sub=you@example.com&groups=Finance')
  curl -i -H "Authorization: Bearer \$TOKEN" $proxy/billing/anything
  bin/okproxy rules add ...      # takes effect within a second, no restart
  curl -s http://127.0.0.1:$admin_port/metrics | grep okproxy_

Press Ctrl-C to stop.
EOF
wait
