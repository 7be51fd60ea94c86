#!/usr/bin/env bash
# ulagg quick start: failover over two veths, nothing to edit. Run as root
# from the source tree:
#
#   ./examples/quickstart.sh          # build, run, show, clean up
#   ./examples/quickstart.sh --wait   # ... and keep it running until Ctrl-C
#
# It makes two network namespaces: PREFIX-host, a Linux host whose bridge
# has two veth links to PREFIX-lagg, where ulagg aggregates the other ends
# (PREFIX0 preferred, PREFIX1 standby) as lagg0 with 10.201.0.2/24. It talks
# to lagg0's TCP echo from the host, pulls PREFIX0 to fail over to PREFIX1
# and talks again, reads the
# metrics, and removes everything it made when it ends, also on Ctrl-C or
# an error. Every address lives inside those namespaces.
#
# Environment: ULAGG, a built ulagg binary (default: go build one);
# ULAGG_QS_PREFIX, the namespace and interface prefix (default ulaggqs).
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=${ULAGG_QS_PREFIX:-ulaggqs}
hns=$prefix-host
lns=$prefix-lagg
p0=${prefix}0
p1=${prefix}1
wait=false
[ "${1:-}" = --wait ] && wait=true

if [ "$(id -u)" -ne 0 ]; then
	echo "quickstart: run as root (it makes network namespaces)" >&2
	exit 1
fi
command -v ip >/dev/null || { echo "quickstart: ip is missing (apt-get install iproute2)" >&2; exit 1; }

# echo_lagg0 sends a line to lagg0's TCP echo service from the host and
# prints the answer (bash's /dev/tcp: no ping or nc needed).
echo_lagg0() {
	ip netns exec "$hns" timeout 5 bash -c 'exec 3<>/dev/tcp/10.201.0.2/7 && echo "$1" >&3 && head -n 1 <&3' _ "$1"
}

tmp=$(mktemp -d /tmp/ulagg-quickstart.XXXXXX)
pid=""
cleanup() {
	set +e
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	fi
	ip netns del "$hns" 2>/dev/null
	ip netns del "$lns" 2>/dev/null
	rm -rf "$tmp"
	echo "== cleaned up: namespaces $hns and $lns removed"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulagg=${ULAGG:-}
if [ -z "$ulagg" ]; then
	echo "== building ulagg"
	export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3} # as scripts/test.sh
	vcs=()
	git rev-parse --is-inside-work-tree >/dev/null 2>&1 && vcs=(-buildvcs=true)
	go build "${vcs[@]}" -o "$tmp/ulagg" ./cmd/ulagg
	ulagg=$tmp/ulagg
fi
"$ulagg" version

echo "== namespaces $hns (a Linux host on a bridge) and $lns (ulagg's ports $p0, $p1)"
ip netns add "$hns"
ip netns add "$lns"
ip -n "$hns" link add br0 type bridge
for p in "$p0" "$p1"; do
	ip link add "$p" netns "$lns" type veth peer name "h$p" netns "$hns"
	ip -n "$hns" link set "h$p" master br0 up
	ip -n "$lns" link set "$p" up
done
ip -n "$hns" link set br0 up
ip -n "$hns" addr add 10.201.0.1/24 dev br0
ip -n "$lns" link set lo up

cat >"$tmp/ulagg.toml" <<EOF
[control]
socket = "$tmp/ulagg.sock"
runtime_dir = "$tmp/run"

[metrics]
listen = "127.0.0.1:9477"    # inside $lns

[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["10.201.0.2/24"]
mac = "02:00:00:00:c9:02"

[[lagg.port]]
name = "$p0"
priority = 1000

[[lagg.port]]
name = "$p1"
priority = 2000

[[service]]
kind = "tcp-echo"
port = 7
EOF
echo "== configuration ($tmp/ulagg.toml)"
sed 's/^/   /' "$tmp/ulagg.toml"

echo "== ulagg run (log: $tmp/ulagg.log)"
ip netns exec "$lns" "$ulagg" run -c "$tmp/ulagg.toml" >"$tmp/ulagg.log" 2>&1 &
pid=$!
export ULAGG_SOCKET=$tmp/ulagg.sock
for _ in $(seq 100); do
	[ -S "$ULAGG_SOCKET" ] && "$ulagg" ifconfig -l >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || { cat "$tmp/ulagg.log" >&2; exit 1; }
	sleep 0.1
done

echo "== ulagg ifconfig lagg0"
"$ulagg" ifconfig lagg0
echo "== TCP echo on lagg0 (10.201.0.2:7) from the host"
echo "   answer: $(echo_lagg0 "hello over $p0")"

echo "== pull $p0: lagg0 fails over to $p1"
ip -n "$lns" link set "$p0" down
for _ in $(seq 50); do
	"$ulagg" ifconfig lagg0 | grep -q "$p1 .*DISTRIBUTING" && break
	sleep 0.1
done
"$ulagg" ifconfig lagg0
echo "   answer: $(echo_lagg0 "hello over $p1")"
ip -n "$lns" link set "$p0" up

echo "== metrics (curl http://127.0.0.1:9477/metrics inside $lns)"
if command -v curl >/dev/null; then
	ip netns exec "$lns" curl -s http://127.0.0.1:9477/metrics |
		grep -E '^ulagg_(lagg_link_up|lagg_failovers_total|port_link_up|build_info)' || true
else
	echo "   (curl is not installed)"
fi

if $wait; then
	echo "== running; try: ULAGG_SOCKET=$ULAGG_SOCKET $ulagg ifconfig -v lagg0. Ctrl-C ends it."
	wait "$pid"
fi
echo "== done"
