package lagg_test

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	ustack "github.com/ulagg/ulagg/stack"
)

// discard keeps test output readable; laggs and wires log a lot.
var discard = slog.New(slog.DiscardHandler)

// node is one gVisor stack whose only NIC is a lagg.
type node struct {
	s    *gstack.Stack
	l    *lagg.Lagg
	addr netip.Prefix
	once sync.Once
	// wedged is set when a test saw the stack hang on teardown: cleanups
	// then leave it alone rather than hang the test binary too.
	wedged atomic.Bool

	// announceMu keeps announcements out of the stack's teardown: if the
	// NIC goes away under ustack.Announce, gVisor's WritePacketToRemote
	// drops the payload without releasing it, which the leak check reports.
	announceMu sync.RWMutex
	// +checklocks:announceMu
	stopped bool
}

const nicID = 1

func mac(side, i int) tcpip.LinkAddress {
	return tcpip.LinkAddress([]byte{0x02, 0, 0, 0, byte(side), byte(i + 1)})
}

// options returns lagg defaults for proto with a discarding logger.
func options(name, proto string) lagg.Options {
	o := lagg.DefaultOptions(name)
	o.Proto = lagg.Proto(proto)
	o.Logger = discard
	return o
}

// newNode builds a stack over a lagg with opts, with the given ports.
func newNode(t *testing.T, opts lagg.Options, addr string, ports []linkep.Port) *node {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = discard
	}
	l, err := lagg.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if err := l.AddPort(p, lagg.DefaultPriority); err != nil {
			l.Close()
			t.Fatal(err)
		}
	}
	s, err := ustack.NewNetstack()
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	n := &node{s: s, l: l, addr: netip.MustParsePrefix(addr)}
	t.Cleanup(n.close)
	if err := ustack.AddInterface(s, nicID, opts.Name, l, []netip.Prefix{n.addr}); err != nil {
		t.Fatal(err)
	}
	l.SetAnnouncer(func() {
		n.announceMu.RLock()
		defer n.announceMu.RUnlock()
		if !n.stopped {
			_ = ustack.Announce(s, nicID)
		}
	})
	return n
}

func (n *node) close() {
	if n.wedged.Load() {
		return
	}
	n.once.Do(func() {
		n.stopStack()
		n.l.Close()
	})
}

// stopAnnouncing waits for a running announcement and stops later ones.
func (n *node) stopAnnouncing() {
	n.announceMu.Lock()
	n.stopped = true
	n.announceMu.Unlock()
}

func (n *node) stopStack() {
	if n.wedged.Load() {
		return
	}
	n.stopAnnouncing()
	n.s.Close()
	n.s.Wait()
}

// pair is two lagg nodes joined by n wires; wire i joins port i of each.
type pair struct {
	a, b  *node
	wires []*linkeptest.Wire
}

// uniq keeps port and lagg names unique across tests in one process (ports
// are registered by name, as host interfaces are).
var uniq atomic.Int64

func nextID() int64 { return uniq.Add(1) }

func newWire(id int64, i int) *linkeptest.Wire {
	return linkeptest.NewWire(fmt.Sprintf("a%d.%d", id, i), fmt.Sprintf("b%d.%d", id, i), mac(1, i), mac(2, i),
		linkeptest.WireOptions{SpeedMbps: 1000, Logger: discard})
}

func newPair(t *testing.T, proto string, nports int, tweak func(side int, o *lagg.Options)) *pair {
	t.Helper()
	id := nextID()
	var wires []*linkeptest.Wire
	var aPorts, bPorts []linkep.Port
	for i := 0; i < nports; i++ {
		w := newWire(id, i)
		wires = append(wires, w)
		aPorts = append(aPorts, w.A)
		bPorts = append(bPorts, w.B)
	}
	return newPairWith(t, id, proto, wires, aPorts, bPorts, tweak)
}

// keptPort is a wire end whose Close only stops delivery; the pair drains
// its wires once both stacks have stopped. A linkeptest.Wire end goes on
// accepting frames after it was closed and never releases them, and a
// sender that found the wire passing can queue a frame just after a drain,
// so draining earlier would leak frames now and then (the leak check in
// TestMain sees them).
type keptPort struct{ *linkeptest.WireEnd }

func (p keptPort) Close() { p.Attach(nil) }

// keep wraps the plain wire ends among ports in keptPort.
func keep(ports []linkep.Port) []linkep.Port {
	out := make([]linkep.Port, len(ports))
	for i, p := range ports {
		if we, ok := p.(*linkeptest.WireEnd); ok {
			p = keptPort{we}
		}
		out[i] = p
	}
	return out
}

// newPairWith builds a pair over ports the caller made (fakes included).
// Fakes that embed a wire end should embed a keptPort.
func newPairWith(t *testing.T, id int64, proto string, wires []*linkeptest.Wire, aPorts, bPorts []linkep.Port, tweak func(side int, o *lagg.Options)) *pair {
	t.Helper()
	oa, ob := options(fmt.Sprintf("laggA%d", id), proto), options(fmt.Sprintf("laggB%d", id), proto)
	if tweak != nil {
		tweak(0, &oa)
		tweak(1, &ob)
	}
	p := &pair{wires: wires}
	// Runs after both nodes have closed (cleanups run last-in first-out).
	t.Cleanup(func() {
		if p.a.wedged.Load() || p.b.wedged.Load() {
			return
		}
		for _, w := range p.wires {
			w.A.Close()
			w.B.Close()
		}
	})
	p.a = newNode(t, oa, "10.0.0.1/24", keep(aPorts))
	p.b = newNode(t, ob, "10.0.0.2/24", keep(bPorts))
	if err := ustack.AddAddress(p.a.s, nicID, netip.MustParsePrefix("fd00::1/64")); err != nil {
		t.Fatal(err)
	}
	if err := ustack.AddAddress(p.b.s, nicID, netip.MustParsePrefix("fd00::2/64")); err != nil {
		t.Fatal(err)
	}
	// Runs before the nodes' own cleanups.
	t.Cleanup(p.quiesce)
	return p
}

// quiesce stops every wire from passing frames and drops its carrier, so
// the frames still queued are dropped rather than delivered into a stack
// that is closing.
func (p *pair) quiesce() {
	for _, w := range p.wires {
		w.SetPassing(false)
		w.SetLinkUp(false)
	}
}

// portA and portB name port i of each side.
func (p *pair) portA(i int) string { return p.wires[i].A.Name() }
func (p *pair) portB(i int) string { return p.wires[i].B.Name() }

var (
	v6A = netip.MustParseAddr("fd00::1")
	v6B = netip.MustParseAddr("fd00::2")
)

func fullAddr(p netip.Prefix, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(p.Addr().AsSlice()), Port: port}
}

// portStatus returns the status of port name of l, failing if it is absent.
func portStatus(t *testing.T, l *lagg.Lagg, name string) lagg.PortStatus {
	t.Helper()
	st := l.Status()
	ps := st.Port(name)
	if ps == nil {
		t.Fatalf("lagg %s: no port %s in status (ports %v)", st.Name, name, l.Ports())
	}
	return *ps
}

// listen listens on n's address at port until the test ends.
func (n *node) listen(t *testing.T, port uint16) net.Listener {
	t.Helper()
	return testkit.ListenTCP(t, n.s, netip.AddrPortFrom(n.addr.Addr(), port))
}

// dialer dials to's address at port from n.
func (n *node) dialer(to *node, port uint16) testkit.Dialer {
	return testkit.GonetDialer(n.s, netip.AddrPortFrom(to.addr.Addr(), port))
}

// startTransfer sends size bytes of a checked stream from from to to over
// a new TCP connection to port (see testkit.StartTransfer).
func startTransfer(t *testing.T, from, to *node, port uint16, size int64) *testkit.Transfer {
	t.Helper()
	c, s := testkit.Connect(t, to.listen(t, port), from.dialer(to, port))
	return testkit.StartTransfer(t, c, s, testkit.TransferOptions{
		Name: fmt.Sprintf("transfer of %d bytes to port %d", size, port),
		Seed: uint64(size) ^ uint64(port)<<32,
		Size: size,
	})
}
