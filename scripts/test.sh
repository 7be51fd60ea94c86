#!/usr/bin/env bash
# The test command: static checks, unit tests with the race detector, then
# the integration tests on real interfaces (root; network namespaces, veth,
# TAP and Open vSwitch). With CI=true nothing may be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...
go test -race -count=1 -timeout 15m $(go list ./... | grep -v /integration)
log=$(mktemp /tmp/ulagg-integration.XXXXXX.log)
set +e
go test -count=1 -timeout 20m -v ./integration/ >"$log" 2>&1
rc=$?
set -e
# The verdicts and the measurements; the whole log on failure.
grep -E '^\s*(--- |PASS|FAIL|ok|panic)|measure:' "$log" || true
if [ "$rc" -ne 0 ]; then
	echo "integration tests failed; full log follows" >&2
	cat "$log" >&2
fi
exit "$rc"
