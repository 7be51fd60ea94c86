#!/bin/sh
# Checks examples/ulagg.service: systemd-analyze verify (with the unit's
# /usr/local/bin/ulagg pointed at a freshly built binary, which verify
# requires to exist) and systemd-analyze security --offline, failing if the
# exposure is above MAX_EXPOSURE (tenths: 30 = 3.0). Needs systemd >= 250.
# Also checks examples/ulagg.sysusers with systemd-sysusers --dry-run.
set -eu
cd "$(dirname "$0")/.."
MAX_EXPOSURE=${MAX_EXPOSURE:-30}
unit=${UNIT:-examples/ulagg.service}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
command -v systemd-analyze >/dev/null || { echo "check-systemd: systemd-analyze not found" >&2; exit 1; }
go build -o "$tmp/ulagg" ./cmd/ulagg
sed "s|/usr/local/bin/ulagg|$tmp/ulagg|g" "$unit" >"$tmp/ulagg.service"
echo "== systemd-analyze verify $unit"
out=$(systemd-analyze verify "$tmp/ulagg.service" 2>&1) || { echo "$out" >&2; exit 1; }
# verify exits 0 on some warnings; any output is a finding.
if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
echo "== systemd-analyze security --offline=true --threshold=$MAX_EXPOSURE $unit"
if ! systemd-analyze security --offline=true --threshold="$MAX_EXPOSURE" "$tmp/ulagg.service" >"$tmp/security" 2>&1; then
	cat "$tmp/security" >&2
	echo "check-systemd: exposure above $MAX_EXPOSURE/10" >&2
	exit 1
fi
grep 'Overall exposure level' "$tmp/security"
if command -v systemd-sysusers >/dev/null; then
	echo "== systemd-sysusers --dry-run examples/ulagg.sysusers"
	mkdir -p "$tmp/root"
	systemd-sysusers --dry-run --root="$tmp/root" - <examples/ulagg.sysusers >"$tmp/sysusers" 2>&1 || { cat "$tmp/sysusers" >&2; exit 1; }
	if grep -qi 'fail\|ignor\|warn' "$tmp/sysusers"; then cat "$tmp/sysusers" >&2; exit 1; fi
fi
echo "check-systemd: ok"
