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
// live here: requireRoot, newLab, newTopo, startAppliance, the stream
// transfer helpers and the leak helpers.
package integration

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
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
func newTopo(t testing.TB, n int) *topo {
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
		if err := lb.Veth(p, tp.lag, h, tp.host); err != nil {
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
	netns      string // where the ports are
	disableGSO bool
}

// startAppliance runs an appliance with lagg lc and the tcp-echo and
// tcp-discard services, ports opened in o.netns, and waits for the lagg's
// link. It is closed when the test ends (Close is idempotent).
func startAppliance(t testing.TB, lc config.Lagg, o appOptions) *app {
	t.Helper()
	cfg := config.Default()
	cfg.Laggs = []config.Lagg{lc}
	cfg.Services = []config.Service{{Kind: "tcp-echo", Port: echoPort}, {Kind: "tcp-discard", Port: discardPort}}
	tl := newTestLog(t)
	open := func(p config.Port, log *slog.Logger) (linkep.Port, error) {
		return linkep.Open(p.Kind, p.Name, linkep.OpenOptions{Netns: o.netns, SpeedMbps: p.SpeedMbps, DisableGSO: o.disableGSO, Logger: log})
	}
	a, err := appliance.New(cfg, appliance.Options{Logger: tl.logger, OpenPort: open})
	if err != nil {
		t.Fatalf("appliance.New: %v", err)
	}
	ap := &app{a: a, l: a.Lagg(lc.Name), log: tl}
	t.Cleanup(a.Close)
	waitFor(t, 5*time.Second, "lagg0 up", func() bool { return ap.l.Status().Up })
	return ap
}

// testLog collects the appliance's log and shows its end if the test
// fails. (Writing to t directly would race with goroutines that log after
// the test ended.)
type testLog struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	logger *slog.Logger
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

// waitFor polls cond every millisecond until it holds, failing the test
// after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %v", what, timeout)
	}
}

func poll(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timeout")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
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

// echoOK sends n pseudo-random bytes to the lagg's tcp-echo service from
// ns and checks they come back unchanged.
func echoOK(t testing.TB, ns string, n int) {
	t.Helper()
	c, err := lab.Dial(ns, "tcp4", net.JoinHostPort(laggIP, strconv.Itoa(echoPort)))
	if err != nil {
		t.Fatalf("dial tcp-echo: %v", err)
	}
	defer c.Close()
	msg := make([]byte, n)
	streamRNG(uint64(n)).Read(msg)
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() { _, err := c.Write(msg); errc <- err }()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("tcp-echo read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("tcp-echo write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("tcp-echo: the %d bytes echoed differ from those sent", n)
	}
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

// streamRNG is the deterministic pseudo-random byte stream for seed; the
// sender writes it and the receiver regenerates it to compare.
func streamRNG(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	copy(s[8:], "ulagg integration stream")
	return rand.NewChaCha8(s)
}

const streamChunk = 128 << 10

// sendStream writes the stream for seed to c: size bytes, or with size < 0
// until stop is closed. It then half-closes c so the receiver sees EOF.
// sent follows its progress.
func sendStream(c net.Conn, seed uint64, size int64, stop <-chan struct{}, sent *atomic.Int64) error {
	rng := streamRNG(seed)
	buf := make([]byte, streamChunk)
	var n int64
	for size < 0 || n < size {
		if size < 0 {
			select {
			case <-stop:
				size = n
				continue
			default:
			}
		}
		b := buf
		if size >= 0 && size-n < int64(len(b)) {
			b = b[:size-n]
		}
		rng.Read(b)
		_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
		k, err := c.Write(b)
		n += int64(k)
		sent.Add(int64(k))
		if err != nil {
			return fmt.Errorf("write after %d bytes: %w", n, err)
		}
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return fmt.Errorf("half-close after %d bytes: %w", n, err)
		}
	}
	return nil
}

// verifyStream reads c to EOF and compares every byte with the stream for
// seed; got follows its progress.
func verifyStream(c net.Conn, seed uint64, got *atomic.Int64) (int64, error) {
	rng := streamRNG(seed)
	buf := make([]byte, streamChunk)
	want := make([]byte, streamChunk)
	var n int64
	for {
		_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
		k, err := c.Read(buf)
		if k > 0 {
			rng.Read(want[:k])
			if !bytes.Equal(buf[:k], want[:k]) {
				i := 0
				for buf[i] == want[i] {
					i++
				}
				return n, fmt.Errorf("byte %d differs from the stream sent", n+int64(i))
			}
			n += int64(k)
			got.Add(int64(k))
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, fmt.Errorf("read after %d bytes: %w", n, err)
		}
	}
}

// Directions of a transfer.
const (
	kernelToUlagg = "kernel→ulagg"
	ulaggToKernel = "ulagg→kernel"
)

// transfer is one verified TCP stream between the kernel host and a gVisor
// stack, in either direction.
type transfer struct {
	dir        string
	size       int64 // < 0: until stop
	sent, recv atomic.Int64
	stop       chan struct{}
	stopOnce   sync.Once
	done       chan struct{}
	start      time.Time
	res        transferResult
	conns      [2]net.Conn // sender, receiver
}

type transferResult struct {
	sent, received int64
	sendErr        error
	recvErr        error
	elapsed        time.Duration
}

func (r transferResult) MBps() float64 { return float64(r.received) / 1e6 / r.elapsed.Seconds() }

// startTransfer starts a verified stream of size bytes (size < 0: until
// Stop) between the kernel host in namespace hostNS and stack s, whose
// address is laggIP. kernel→ulagg connects from the host to a gonet
// listener on s; ulagg→kernel dials from s to a kernel listener.
func startTransfer(t testing.TB, s *gstack.Stack, hostNS, dir string, size int64, seed uint64) *transfer {
	t.Helper()
	tr := &transfer{dir: dir, size: size, stop: make(chan struct{}), done: make(chan struct{})}
	var sender, receiver net.Conn
	switch dir {
	case kernelToUlagg:
		ln, err := gonet.ListenTCP(s, tcpip.FullAddress{Port: 0}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatalf("gonet listen: %v", err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		if sender, err = lab.Dial(hostNS, "tcp4", net.JoinHostPort(laggIP, strconv.Itoa(port))); err != nil {
			t.Fatalf("dial the gonet listener from the host: %v", err)
		}
		select {
		case receiver = <-accepted:
		case <-time.After(10 * time.Second):
		}
		if receiver == nil {
			sender.Close()
			t.Fatal("gonet accept failed")
		}
	case ulaggToKernel:
		ln, err := lab.Listen(hostNS, "tcp4", hostIP+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		accepted := make(chan net.Conn, 1)
		go func() {
			c, _ := ln.Accept()
			accepted <- c
		}()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		gc, err := gonet.DialContextTCP(ctx, s, tcpip.FullAddress{Addr: tcpip.AddrFrom4(hostAddr.As4()), Port: uint16(port)}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatalf("gonet dial the host: %v", err)
		}
		sender = gc
		select {
		case receiver = <-accepted:
		case <-time.After(10 * time.Second):
		}
		if receiver == nil {
			sender.Close()
			t.Fatal("kernel accept failed")
		}
	default:
		t.Fatalf("unknown direction %q", dir)
	}
	tr.start = time.Now()
	tr.conns = [2]net.Conn{sender, receiver}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		tr.res.sendErr = sendStream(sender, seed, size, tr.stop, &tr.sent)
	}()
	go func() {
		defer wg.Done()
		tr.res.received, tr.res.recvErr = verifyStream(receiver, seed, &tr.recv)
	}()
	go func() {
		wg.Wait()
		tr.res.elapsed = time.Since(tr.start)
		tr.res.sent = tr.sent.Load()
		sender.Close()
		receiver.Close()
		close(tr.done)
	}()
	t.Cleanup(func() {
		// Normally done already; after a failure, end it: half-close
		// first, then, if that does not do, close both ends.
		tr.Stop()
		select {
		case <-tr.done:
			return
		case <-time.After(5 * time.Second):
		}
		tr.conns[0].Close()
		tr.conns[1].Close()
		select {
		case <-tr.done:
		case <-time.After(30 * time.Second):
			t.Errorf("%s transfer did not end", dir)
		}
	})
	return tr
}

// Stop ends an open-ended transfer (the sender half-closes).
func (tr *transfer) Stop() { tr.stopOnce.Do(func() { close(tr.stop) }) }

// Wait waits for the transfer and fails the test unless every byte sent
// arrived intact, with no reset or other error on either side.
func (tr *transfer) Wait(t testing.TB, timeout time.Duration) transferResult {
	t.Helper()
	select {
	case <-tr.done:
	case <-time.After(timeout):
		t.Fatalf("%s: transfer not done within %v (sent %d, received %d)", tr.dir, timeout, tr.sent.Load(), tr.recv.Load())
	}
	r := tr.res
	if r.sendErr != nil {
		t.Errorf("%s: sender: %v", tr.dir, r.sendErr)
	}
	if r.recvErr != nil {
		t.Errorf("%s: receiver: %v", tr.dir, r.recvErr)
	}
	if r.received != r.sent || (tr.size >= 0 && r.received != tr.size) {
		t.Errorf("%s: received %d bytes, sent %d (size %d)", tr.dir, r.received, r.sent, tr.size)
	}
	return r
}

// waitBytes waits until the transfer's receiver got at least n bytes.
func (tr *transfer) waitBytes(t testing.TB, n int64, timeout time.Duration) {
	t.Helper()
	waitFor(t, timeout, fmt.Sprintf("%s: %d bytes received", tr.dir, n), func() bool {
		select {
		case <-tr.done:
			return true
		default:
		}
		return tr.recv.Load() >= n
	})
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
	waitFor(t, 2*time.Second, "LastFailover updated", func() bool { return l.Status().LastFailover != before.LastFailover })
	s.internal = l.Status().LastFailover
	return s
}

// linkDown sets dev in namespace ns admin down with a netlink request and
// returns the time just before the request was sent.
func linkDown(t testing.TB, ns, dev string) time.Time {
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
	if err := nl.LinkSetDown(link); err != nil {
		t.Fatalf("set %s down: %v", dev, err)
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
	waitFor(t, 5*time.Second, "transmitting on "+want+" again", func() bool {
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

// numFDs counts this process's open file descriptors.
func numFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

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

// settle polls until the goroutine and fd counts are back within slack of
// base, and returns the last counts seen.
func settle(baseG, baseFD, slackG, slackFD int, timeout time.Duration) (g, fds int, ok bool) {
	deadline := time.Now().Add(timeout)
	for {
		g, fds = numGoroutine(), numFDs()
		if g <= baseG+slackG && fds <= baseFD+slackFD {
			return g, fds, true
		}
		if time.Now().After(deadline) {
			return g, fds, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
