#!/usr/bin/env bash
# Provides a PostgreSQL database for development and tests, with no manual set-up.
#
#   scripts/db.sh up      print "export DATABASE_URL=..." for a reachable database
#   scripts/db.sh down    stop and delete the private cluster (if this script started one)
#   scripts/db.sh status  say what is in use
#
# Order of preference:
#   1. DATABASE_URL, when it is set and reachable;
#   2. a private, throw-away cluster (initdb + pg_ctl from the system's PostgreSQL
#      binaries) on a free loopback port, its socket and data in a state dir;
#   3. if there are no PostgreSQL binaries and we are root on Debian/Ubuntu,
#      apt-get install postgresql, then 2.
# As root, the cluster runs as the `postgres` user (initdb refuses root).
# Use as:  eval "$(scripts/db.sh up)"
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The data dir lives outside the repo so the postgres user can reach it even when
# the checkout is under /root; it is keyed by the checkout path so two clones
# never share a cluster.
key="$(printf '%s' "$repo" | cksum | cut -d' ' -f1)"
state="${OKPROXY_DB_STATE:-${TMPDIR:-/tmp}/okproxy-pg-$(id -u)-$key}"
data="$state/data"
envfile="$state/env"

log() { echo "db.sh: $*" >&2; }
die() { echo "db.sh: $*" >&2; exit 1; }

redact() { sed -E 's#(://[^:/@]+:)[^@]*@#\1***@#'; }

reachable() { # url
	if command -v psql >/dev/null 2>&1; then
		PGCONNECT_TIMEOUT=3 psql "$1" -XAtqc 'select 1' >/dev/null 2>&1
	else
		return 1
	fi
}

find_bindir() {
	local d
	for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -V -r); do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then echo "$d"; return 0; fi
	done
	if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
		dirname "$(readlink -f "$(command -v initdb)")"; return 0
	fi
	return 1
}

install_postgres() {
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		die "no PostgreSQL server binaries found (looked in /usr/lib/postgresql/*/bin and PATH).
Install them, e.g. on Debian/Ubuntu: sudo apt-get install -y postgresql
or set DATABASE_URL to a reachable PostgreSQL (13+) database."
	fi
	log "no PostgreSQL binaries found; installing the postgresql package with apt-get"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq postgresql postgresql-contrib >&2
	# Debian starts a system cluster on 5432; we do not use it.
}

# as_pg runs a command as the cluster owner: the postgres user when we are root.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to own the cluster (install the postgresql package)"
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

free_port() {
	local p i
	for i in $(seq 1 50); do
		p=$(( 20000 + (RANDOM % 20000) ))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
	done
	die "could not find a free port"
}

running() { [ -f "$data/postmaster.pid" ] && as_pg "$bindir/pg_ctl" -D "$data" status >/dev/null 2>&1; }

up() {
	if [ -n "${DATABASE_URL:-}" ] && [ -z "${OKPROXY_DB_FORCE_PRIVATE:-}" ]; then
		if reachable "$DATABASE_URL"; then
			log "using DATABASE_URL ($(printf '%s' "$DATABASE_URL" | redact))"
			printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
			return 0
		fi
		log "DATABASE_URL is set but not reachable; starting a private cluster instead"
	fi
	bindir="$(find_bindir)" || { install_postgres; bindir="$(find_bindir)" || die "PostgreSQL installed but initdb/pg_ctl not found"; }
	if [ -f "$envfile" ] && running; then
		# shellcheck disable=SC1090
		. "$envfile"
		if reachable "$DATABASE_URL"; then
			log "private cluster already running in $state"
			printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
			return 0
		fi
	fi
	if [ -d "$data" ] && ! running; then rm -rf "$state"; fi
	mkdir -p "$state"
	chmod 755 "$state"
	local pw port
	pw="$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
	printf '%s\n' "$pw" >"$state/pwfile"
	if [ "$(id -u)" = 0 ]; then chown -R postgres: "$state"; fi
	chmod 600 "$state/pwfile"
	log "initialising a private cluster in $state (PostgreSQL from $bindir)"
	as_pg "$bindir/initdb" -D "$data" -U postgres --pwfile="$state/pwfile" -A scram-sha-256 \
		--auth-local=trust -E UTF8 --locale=C --no-sync >"$state/initdb.log" 2>&1 ||
		{ cat "$state/initdb.log" >&2; die "initdb failed"; }
	rm -f "$state/pwfile"
	local tries
	for tries in 1 2 3 4 5; do
		port="$(free_port)"
		cat >>"$data/postgresql.conf" <<EOF
# okproxy private test cluster: durability traded for speed; never use for real data.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$data'
max_connections = 300
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
shared_preload_libraries = 'pg_stat_statements'
log_min_messages = warning
EOF
		if as_pg "$bindir/pg_ctl" -D "$data" -l "$state/server.log" -w -t 60 start >/dev/null 2>&1; then
			break
		fi
		log "start on port $port failed (try $tries); retrying"
		sed -i '/^# okproxy private test cluster/,$d' "$data/postgresql.conf"
		port=""
	done
	[ -n "$port" ] || { tail -20 "$state/server.log" >&2; die "could not start the private cluster"; }
	DATABASE_URL="postgres://postgres:$pw@127.0.0.1:$port/postgres?sslmode=disable"
	printf 'DATABASE_URL=%q\n' "$DATABASE_URL" >"$envfile"
	chmod 600 "$envfile"
	log "private cluster up on 127.0.0.1:$port"
	printf 'export DATABASE_URL=%q\n' "$DATABASE_URL"
}

down() {
	if [ ! -d "$data" ]; then log "no private cluster in $state"; return 0; fi
	bindir="$(find_bindir)" || die "PostgreSQL binaries not found"
	as_pg "$bindir/pg_ctl" -D "$data" -m fast -w stop >/dev/null 2>&1 || true
	rm -rf "$state"
	log "private cluster stopped and removed"
}

status() {
	if [ -f "$envfile" ]; then
		# shellcheck disable=SC1090
		. "$envfile"
		bindir="$(find_bindir)" || true
		if [ -n "${bindir:-}" ] && running; then
			echo "private cluster running in $state: $(printf '%s' "$DATABASE_URL" | redact)"
			return 0
		fi
	fi
	echo "no private cluster running (state dir $state)"
}

case "${1:-up}" in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac
