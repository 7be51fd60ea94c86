// Package integration tests ulagg on real interfaces: AF_PACKET ports on
// veths and TAP devices ulagg creates, against the Linux kernel's own TCP/IP
// stack living in a network namespace, and measures what matters (failover
// time, throughput against plain gVisor).
//
// Running (root; iproute2; tc; ethtool and nstat optional):
//
//	go test -count=1 -v ./integration/                # the suite, ~1.5 min on 2 idle cores
//	go test -count=1 -v ./integration/ 2>&1 | grep measure:   # every number measured
//	go test -count=1 -v -run TestFailoverLatency ./integration/
//
// The throughput harness is TestThroughput, a normal test (it runs in the
// suite, short cells, generous assertions). For real numbers run it alone
// and longer, on an otherwise idle machine:
//
//	go test -count=1 -v -run TestThroughput ./integration/ -args -long       # 5 s cells
//	go test -count=1 -v -run TestThroughput ./integration/ -args -cell 10s   # any length
//	ULAGG_BENCH_CELL=5s go test -count=1 -v -run TestThroughput ./integration/
//	go test -count=1 -v -run TestThroughput ./integration/ -args -rows de    # some rows only
//
// By default each cell runs 1 s, and 5 s behind tbf. The table and the
// ratios are the lines "measure: throughput ..." and "measure: ratio ...".
//
// Without root the tests skip; with CI=true they fail instead. The tests run
// one after another (no t.Parallel): the machine has 2 cores and the
// throughput numbers would mean nothing otherwise.
//
// Topology (newTopo): namespace <prefix>-h is the kernel host, hostIP on a
// bridge over veths ulith0..N; their peers ulitp0..N sit in namespace
// <prefix>-l, without addresses, and are the lagg's ports. The appliance runs
// in this process (appliance.New) with its ports opened inside <prefix>-l
// (linkep.Options.Netns); nothing is created in or sent from the root
// namespace.
//
// Names: every namespace and interface starts with testPrefix ("ulit");
// TestMain fails the run if any is left over, or if goroutines or file
// descriptors leaked. Fixtures shared with other test files (ovs_test.go)
// live here: requireRoot, newLab, newTopo, startAppliance, startTransfer
// and leftovers. The verified streams, echo checks, waits and leak checks
// themselves are package internal/testkit's, shared with the lagg and
// appliance tests.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/stack/appliance"
)

// testPrefix starts the name of every namespace and interface the
// integration tests create; TestMain checks none is left.
const testPrefix = "ulit"

// Addresses of the test topologies. They exist only inside the namespaces
// the tests create (and in the appliance's own gVisor stack).
const (
	hostIP = "10.231.0.1"
	laggIP = "10.231.0.2"
)

var (
	hostAddr = netip.MustParseAddr(hostIP)
	laggAddr = netip.MustParseAddr(laggIP)
)

// requireRoot skips a test that needs root, or fails it under CI=true,
// where nothing may be skipped.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("integration tests need root (CI=true: failing instead of skipping)")
	}
	t.Skip("integration tests need root (network namespaces, veth, TAP)")
}

// newLab returns a lab for this test whose namespaces are named
// testPrefix+<4 hex of the test name>+"-"+name, deleted when the test ends.
func newLab(t testing.TB) *lab.Lab {
	t.Helper()
	requireRoot(t)
	// The name hashes the test and this process, so two runs at once (a
	// developer's and CI's) never take or delete each other's namespaces.
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", t.Name(), os.Getpid())
	prefix := fmt.Sprintf("%s%04x", testPrefix, h.Sum32()&0xffff)
	lb, err := lab.New(prefix)
	if err != nil {
		t.Fatal(err)
	}
	labPrefixes.Store(prefix, true)
	t.Cleanup(func() {
		if err := lb.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
	})
	return lb
}

// topo is the kernel host behind a bridge, wired by one veth per port to
// the namespace holding the lagg's ports.
type topo struct {
	lab    *lab.Lab
	host   string   // namespace of the kernel host
	lag    string   // namespace of the lagg's ports
	ports  []string // lag side: ulitp0..
	peers  []string // host side, bridged: ulith0..
	bridge string
}

// newTopo builds a topology with n ports.
func newTopo(t testing.TB, n int) *topo { return newTopoWith(t, n, false) }

// newTopoWith is newTopo; with nicLike, each veth's ends have equal
// ifindexes (lab.NICVeth), so far-end carrier changes arrive as late as a
// physical NIC's.
func newTopoWith(t testing.TB, n int, nicLike bool) *topo {
	t.Helper()
	lb := newLab(t)
	tp := &topo{lab: lb, bridge: testPrefix + "br"}
	var err error
	if tp.host, err = lb.AddNS("h"); err != nil {
		t.Fatal(err)
	}
	if tp.lag, err = lb.AddNS("l"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p, h := fmt.Sprintf("%sp%d", testPrefix, i), fmt.Sprintf("%sh%d", testPrefix, i)
		veth := lb.Veth
		if nicLike {
			veth = func(a, nsA, b, nsB string) error { return lb.NICVeth(a, nsA, b, nsB, 100+i) }
		}
		if err := veth(p, tp.lag, h, tp.host); err != nil {
			t.Fatal(err)
		}
		tp.ports, tp.peers = append(tp.ports, p), append(tp.peers, h)
	}
	if err := lb.Bridge(tp.host, tp.bridge, hostIP+"/24", tp.peers...); err != nil {
		t.Fatal(err)
	}
	return tp
}

// setLink runs `ip -n NS link set DEV args...`.
func setLink(t testing.TB, ns, dev string, args ...string) {
	t.Helper()
	if err := lab.Run(append([]string{"ip", "-n", ns, "link", "set", "dev", dev}, args...)...); err != nil {
		t.Fatal(err)
	}
}

func mustLink(t testing.TB, ns, dev string) lab.LinkInfo {
	t.Helper()
	li, err := lab.Link(ns, dev)
	if err != nil {
		t.Fatal(err)
	}
	return li
}

// laggConfig is lagg0 with laggIP/24 over afpacket ports, priorities
// 1000, 2000, ... in the order given.
func laggConfig(proto string, ports ...string) config.Lagg {
	lc := config.NewLagg("lagg0")
	lc.Proto = proto
	lc.Addresses = []netip.Prefix{netip.PrefixFrom(laggAddr, 24)}
	for i, p := range ports {
		lc.Ports = append(lc.Ports, config.Port{Name: p, Kind: "afpacket", Priority: uint16(1000 * (i + 1))})
	}
	return lc
}

// Ports of the built-in services the tests start.
const (
	echoPort    = 7
	discardPort = 9
)

// app is a running appliance with one lagg, lagg0.
type app struct {
	a   *appliance.Appliance
	l   *lagg.Lagg
	log *testLog
}

type appOptions struct {
	netns string // where the ports are
	// disableGSO writes gso = false (config.Port.DisableGSO) on every port
	// of the lagg's configuration; the ports are opened as the appliance
	// opens them (appliance.PortOpenOptions), so the key is what turns
	// host GSO off.
	disableGSO bool
}

// startAppliance runs an appliance with lagg lc and the tcp-echo and
// tcp-discard services, ports opened in o.netns, and waits for the lagg's
// link. It is closed when the test ends (Close is idempotent).
func startAppliance(t testing.TB, lc config.Lagg, o appOptions) *app {
	t.Helper()
	if o.disableGSO {
		lc.Ports = slices.Clone(lc.Ports)
		for i := range lc.Ports {
			lc.Ports[i].DisableGSO = true
		}
	}
	cfg := config.Default()
	cfg.Laggs = []config.Lagg{lc}
	cfg.Services = []config.Service{{Kind: "tcp-echo", Port: echoPort}, {Kind: "tcp-discard", Port: discardPort}}
	tl := newTestLog(t)
	open := nsOpener(o.netns)
	a, err := appliance.New(cfg, appliance.Options{Logger: tl.logger, OpenPort: open})
	if err != nil {
		t.Fatalf("appliance.New: %v", err)
	}
	ap := &app{a: a, l: a.Lagg(lc.Name), log: tl}
	t.Cleanup(a.Close)
	testkit.WaitFor(t, 5*time.Second, "lagg0 up", func() bool { return ap.l.Status().Up })
	return ap
}

// nsOpener opens ports as the appliance does (appliance.PortOpenOptions:
// speed, gso), in namespace netns.
func nsOpener(netns string) appliance.PortOpener {
	return func(p config.Port, log *slog.Logger) (linkep.Port, error) {
		o := appliance.PortOpenOptions(p, log)
		o.Netns = netns
		return linkep.Open(p.Kind, p.Name, o)
	}
}

// testLog collects the appliance's log and shows its end if the test
// fails. (Writing to t directly would race with goroutines that log after
// the test ended.)
type testLog struct {
	logger *slog.Logger // set once by newTestLog
	mu     sync.Mutex
	// +checklocks:mu
	buf bytes.Buffer
}

func newTestLog(t testing.TB) *testLog {
	tl := &testLog{}
	tl.logger = slog.New(slog.NewTextHandler(tl, &slog.HandlerOptions{Level: slog.LevelInfo}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("appliance log (end):\n%s", tl.tail(16<<10))
		}
	})
	return tl
}

func (tl *testLog) Write(p []byte) (int, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.buf.Len() > 1<<20 {
		keep := bytes.Clone(tl.buf.Bytes()[tl.buf.Len()-256<<10:])
		tl.buf.Reset()
		tl.buf.Write(keep)
	}
	return tl.buf.Write(p)
}

func (tl *testLog) tail(n int) string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	b := tl.buf.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// count returns how many log lines contain s.
func (tl *testLog) count(s string) int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return strings.Count(tl.buf.String(), s)
}

// pingOK pings laggIP from ns and fails unless most replies come back.
func pingOK(t testing.TB, ns string, count int) lab.PingResult {
	t.Helper()
	r, err := lab.Ping(ns, laggAddr, count, 20*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Received < count-1 {
		t.Fatalf("ping %s from %s: %d of %d replies", laggIP, ns, r.Received, r.Sent)
	}
	return r
}

// kernelDialer dials TCP addr from inside namespace ns.
func kernelDialer(ns, addr string) testkit.Dialer {
	return func(context.Context) (net.Conn, error) { return lab.Dial(ns, "tcp4", addr) }
}

// echoOK sends n pseudo-random bytes to the lagg's tcp-echo service from
// ns and checks they come back unchanged (testkit.CheckEcho).
func echoOK(t testing.TB, ns string, n int) {
	t.Helper()
	testkit.CheckEcho(t, kernelDialer(ns, net.JoinHostPort(laggIP, strconv.Itoa(echoPort))), testkit.Bytes(uint64(n), n))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// portCounters returns the counters of one port of l.
func portCounters(t testing.TB, l *lagg.Lagg, port string) lagg.Counters {
	t.Helper()
	st := l.Status()
	p := st.Port(port)
	if p == nil {
		t.Fatalf("%s is not a port of %s", port, st.Name)
	}
	return p.Counters
}

// --- verified byte streams ---

// Directions of a transfer.
const (
	kernelToUlagg = "kernel→ulagg"
	ulaggToKernel = "ulagg→kernel"
)

// startTransfer starts a verified stream (testkit.StartTransfer) of size
// bytes (size < 0: until Stop) between the kernel host in namespace hostNS
// and stack s, whose address is laggIP. kernel→ulagg connects from the host
// to a gonet listener on s; ulagg→kernel dials from s to a kernel listener.
func startTransfer(t testing.TB, s *gstack.Stack, hostNS, dir string, size int64, seed uint64) *testkit.Transfer {
	t.Helper()
	var client, server net.Conn
	switch dir {
	case kernelToUlagg:
		ln := testkit.ListenTCP(t, s, netip.AddrPort{})
		defer ln.Close()
		client, server = testkit.Connect(t, ln, kernelDialer(hostNS, net.JoinHostPort(laggIP, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))))
	case ulaggToKernel:
		ln, err := lab.Listen(hostNS, "tcp4", hostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		client, server = testkit.Connect(t, ln, testkit.GonetDialer(s, netip.AddrPortFrom(hostAddr, port)))
	default:
		t.Fatalf("unknown direction %q", dir)
	}
	return testkit.StartTransfer(t, client, server, testkit.TransferOptions{Name: dir, Seed: seed, Size: size, Chunk: 128 << 10})
}

// --- failover measurement ---

// failoverSample is one pull of the transmitting port.
type failoverSample struct {
	from, to string
	// internal is lagg.Status().LastFailover: from the appliance seeing the
	// carrier loss to the first frame on the new port.
	internal time.Duration
	// external is from the netlink request that sets the port down to this
	// test seeing the new port's transmit counter move (polled every
	// 100 µs): the whole failover as seen from outside.
	external time.Duration
}

// pullActive takes the transmitting port's link down (as `ip -n NS link set
// PORT down`, through netlink so the request can be timed) and waits for the
// lagg to transmit on another port.
func pullActive(t testing.TB, ns string, l *lagg.Lagg) failoverSample {
	t.Helper()
	before := l.Status()
	from := before.TxPort
	if from == "" {
		t.Fatal("no transmitting port to pull")
	}
	tx := map[string]uint64{}
	for _, p := range before.Ports {
		tx[p.Name] = p.Counters.TxFrames
	}
	pulled := linkDown(t, ns, from)
	var s failoverSample
	s.from = from
	deadline := pulled.Add(3 * time.Second)
	for {
		st := l.Status()
		if st.TxPort != "" && st.TxPort != from && st.Failovers > before.Failovers {
			if p := st.Port(st.TxPort); p != nil && p.Counters.TxFrames > tx[st.TxPort] {
				s.to, s.external = st.TxPort, time.Since(pulled)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulled %s: no frame on another port within 3s (tx port %q, failovers %d→%d)", from, st.TxPort, before.Failovers, st.Failovers)
		}
		time.Sleep(100 * time.Microsecond)
	}
	testkit.WaitFor(t, 2*time.Second, "LastFailover updated", func() bool { return l.Status().LastFailover != before.LastFailover })
	s.internal = l.Status().LastFailover
	return s
}

// linkDown sets dev in namespace ns admin down with a netlink request and
// returns the time just before the request was sent.
func linkDown(t testing.TB, ns, dev string) time.Time { return setAdmin(t, ns, dev, false) }

// setAdmin sets dev in namespace ns admin up or down with a netlink request
// and returns the time just before the request was sent.
func setAdmin(t testing.TB, ns, dev string, up bool) time.Time {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	link, err := nl.LinkByName(dev)
	if err != nil {
		t.Fatalf("%s in %s: %v", dev, ns, err)
	}
	start := time.Now()
	set := nl.LinkSetDown
	if up {
		set = nl.LinkSetUp
	}
	if err := set(link); err != nil {
		t.Fatalf("set %s up=%v: %v", dev, up, err)
	}
	return start
}

// restorePorts brings ports up again and waits until the lagg transmits on
// want (failover pre-empts back to the best priority).
func restorePorts(t testing.TB, ns string, l *lagg.Lagg, want string, ports ...string) {
	t.Helper()
	for _, p := range ports {
		setLink(t, ns, p, "up")
	}
	testkit.WaitFor(t, 5*time.Second, "transmitting on "+want+" again", func() bool {
		st := l.Status()
		for _, p := range ports {
			if ps := st.Port(p); ps == nil || !ps.Active {
				return false
			}
		}
		return st.TxPort == want
	})
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func durations(ds []time.Duration) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Round(time.Microsecond).String()
	}
	return strings.Join(parts, " ")
}

// --- leaks ---

// leftovers lists namespaces, and interfaces of the root namespace, whose
// names start with testPrefix.
// labPrefixes holds the namespace prefixes this process used.
var labPrefixes sync.Map

func leftovers() ([]string, error) {
	var out []string
	nss, err := lab.Namespaces()
	if err != nil {
		return nil, err
	}
	for _, ns := range nss {
		if _, ours := labPrefixes.Load(strings.SplitN(ns, "-", 2)[0]); ours {
			out = append(out, "netns "+ns)
		}
	}
	links, err := lab.Links("")
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if strings.HasPrefix(l.Name, testPrefix) {
			out = append(out, "interface "+l.Name)
		}
	}
	return out, nil
}
