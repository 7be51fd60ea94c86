#!/usr/bin/env bash
# The test command: static checks, unit tests with the race detector, then
# the integration tests on real interfaces (root; network namespaces, veth,
# TAP and Open vSwitch). With CI=true nothing may be skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
# go.mod needs go1.27.3 (no reachable standard-library vulnerabilities); a
# Debian machine's Go sets GOTOOLCHAIN=local, so name it: the go command
# fetches it from the module proxy once.
export GOTOOLCHAIN=go1.27.3

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then
	echo "gofmt would change: $unformatted" >&2
	exit 1
fi
go vet ./...

# Static analysis. The analyzers are built once per Go and tool version
# into a cache outside the tree (ULAGG_TOOLS overrides where); checklocks
# comes from the gVisor version go.mod pins.
tools=${ULAGG_TOOLS:-$(go env GOPATH)/pkg/ulagg-tools}/$(go env GOVERSION)
tool() { # tool NAME PACKAGE VERSION prints the binary's path, built if missing
	if [ ! -x "$tools/$1@$3/$1" ]; then
		GOBIN="$tools/$1@$3" go install "$2@$3" >&2
	fi
	echo "$tools/$1@$3/$1"
}
echo "== GOOS=darwin go build ./lagg/... (the lagg core has no Linux-only dependency)"
GOOS=darwin go build ./lagg/...
echo "== checklocks"
# The gVisor version's own golang.org/x/tools (v0.43.0) cannot read go1.27's
# standard library (its SSA builder panics on internal/poll), so checklocks is
# built in a scratch module with a newer x/tools.
gvisor_version=$(go list -m -f '{{.Version}}' gvisor.dev/gvisor)
xtools_version=v0.52.0
checklocks="$tools/checklocks@$gvisor_version+tools@$xtools_version/checklocks"
if [ ! -x "$checklocks" ]; then
	scratch=$(mktemp -d)
	(cd "$scratch" && go mod init checklocks >/dev/null 2>&1 &&
		go get -tool "gvisor.dev/gvisor/tools/checklocks/cmd/checklocks@$gvisor_version" >&2 &&
		go get "golang.org/x/tools@$xtools_version" >&2 &&
		go build -o "$checklocks" gvisor.dev/gvisor/tools/checklocks/cmd/checklocks)
	rm -rf "$scratch"
fi
go vet -vettool="$checklocks" ./...
echo "== staticcheck"
staticcheck=$(tool staticcheck honnef.co/go/tools/cmd/staticcheck v0.8.2)
"$staticcheck" ./...
echo "== go mod tidy -diff"
go mod tidy -diff
echo "== govulncheck"
# The vulnerability database is built from golang.org/x/vulndb's OSV files,
# which the module proxy serves (the database's own host is out of reach),
# once per vulndb version into the tools cache; any reachable finding fails.
vulndb_version=v0.0.0-20261105234957-e22db6528018
vulndb="$tools/vulndb@$vulndb_version"
if [ ! -f "$vulndb/index/db.json" ]; then
	indexdb=$(tool indexdb golang.org/x/vulndb/cmd/indexdb "$vulndb_version")
	# Outside the module: vulndb is no dependency of ours.
	osv=$(cd /tmp && go mod download -json "golang.org/x/vulndb@$vulndb_version" | grep '"Dir"' | cut -d'"' -f4)/data/osv
	rm -rf "$vulndb.tmp"
	"$indexdb" -vulns "$osv" -out "$vulndb.tmp"
	mv "$vulndb.tmp" "$vulndb"
fi
govulncheck=$(tool govulncheck golang.org/x/vuln/cmd/govulncheck v1.9.0)
"$govulncheck" -db "file://$vulndb" ./...
echo "== systemd unit (verify, security exposure <= 3.0)"
./scripts/check-systemd.sh

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
