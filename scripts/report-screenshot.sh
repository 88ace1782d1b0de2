#!/usr/bin/env bash
# Renders the HTML audit report of the anomaly fixture (internal/cli
# TestAuditReportFindsAnomalies) in headless Chromium, saves a screenshot and
# fails when the browser logs a console error or the page is not one
# self-contained file. Not part of `make test`: it needs Debian's chromium
# (apt-get install -y chromium) and takes a few seconds.
#
#   scripts/report-screenshot.sh [out.png]      (default: report.png)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-report.png}"
command -v chromium >/dev/null 2>&1 || { echo "report-screenshot: chromium not found (apt-get install -y chromium)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
html="$work/report.html"

eval "$(scripts/db.sh up)"
OKPROXY_REPORT_HTML="$html" go test -count=1 -run '^TestAuditReportFindsAnomalies$' ./internal/cli/ >/dev/null
[ -s "$html" ] || { echo "report-screenshot: no HTML written" >&2; exit 1; }

# Self-contained: no scripts, no external references of any kind.
if grep -Eq '<script|src=|href=|@import|url\(' "$html"; then
	echo "report-screenshot: report references external assets or scripts" >&2
	exit 1
fi

# --disable-background-networking etc. keep the browser offline and quiet;
# --enable-logging=stderr --v=0 prints every console message (as ":CONSOLE")
# to stderr. The page has no scripts, so any console message is a failure.
chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
	--disable-component-update --disable-sync --no-first-run --disable-default-apps \
	--user-data-dir="$work/profile" --enable-logging=stderr --v=0 \
	--window-size=1280,2000 --screenshot="$work/shot.png" "file://$html" >"$work/chromium.log" 2>&1 || {
	cat "$work/chromium.log" >&2
	echo "report-screenshot: chromium failed" >&2
	exit 1
}
if grep -E 'Uncaught|:CONSOLE|CONSOLE\(|Failed to load resource|Refused to' "$work/chromium.log" >&2; then
	echo "report-screenshot: the page logged console errors (above)" >&2
	exit 1
fi
[ -s "$work/shot.png" ] || { echo "report-screenshot: no screenshot" >&2; exit 1; }
cp "$work/shot.png" "$out"
echo "report-screenshot: $out ($(stat -c %s "$out") bytes), no console errors"
