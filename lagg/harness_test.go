package lagg_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/waiter"

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

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
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

// listenEcho runs a TCP echo server on n at port until the test ends.
func listenEcho(t *testing.T, n *node, port uint16) {
	t.Helper()
	serveTCP(t, n, port, func(c net.Conn) { _, _ = io.Copy(c, c) })
}

// serveTCP accepts connections on n at port until the test ends and runs
// handle on each (with a minute's deadline), then closes it.
func serveTCP(t *testing.T, n *node, port uint16, handle func(net.Conn)) {
	t.Helper()
	ln, err := gonet.ListenTCP(n.s, fullAddr(n.addr, port), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(time.Minute))
				handle(c)
			}()
		}
	}()
}

// echo dials the echo server on to from from and checks that msg comes back.
func echo(t *testing.T, from, to *node, port uint16, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, from.s, fullAddr(to.addr, port), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial echo: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("echo write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo: got %d bytes that differ from the %d sent", len(got), len(msg))
	}
}

// ping sends ICMP echo requests from n to dst through a gVisor ping
// endpoint until a reply carrying our payload arrives or timeout passes.
func ping(n *node, dst netip.Addr, timeout time.Duration) error {
	netProto, transProto := ipv4.ProtocolNumber, header.ICMPv4ProtocolNumber
	if dst.Is6() {
		netProto, transProto = ipv6.ProtocolNumber, header.ICMPv6ProtocolNumber
	}
	var wq waiter.Queue
	ep, terr := n.s.NewEndpoint(transProto, netProto, &wq)
	if terr != nil {
		return fmt.Errorf("icmp endpoint: %s", terr)
	}
	defer ep.Close()
	we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	if terr := ep.Connect(tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(dst.AsSlice())}); terr != nil {
		return fmt.Errorf("icmp connect: %s", terr)
	}
	payload := []byte("ulagg-ping")
	deadline := time.Now().Add(timeout)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := make([]byte, header.ICMPv4MinimumSize+len(payload))
		if dst.Is6() {
			h := header.ICMPv6(req)
			h.SetType(header.ICMPv6EchoRequest)
			h.SetSequence(seq)
		} else {
			h := header.ICMPv4(req)
			h.SetType(header.ICMPv4Echo)
			h.SetSequence(seq)
		}
		copy(req[header.ICMPv4MinimumSize:], payload)
		var r bytes.Reader
		r.Reset(req)
		if _, terr := ep.Write(&r, tcpip.WriteOptions{}); terr != nil {
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				return fmt.Errorf("icmp write: %s", terr)
			}
		}
		wait := time.NewTimer(min(200*time.Millisecond, time.Until(deadline)+time.Millisecond))
	read:
		for {
			var buf bytes.Buffer
			_, terr := ep.Read(&buf, tcpip.ReadOptions{})
			if terr == nil {
				b := buf.Bytes()
				if len(b) >= header.ICMPv4MinimumSize && bytes.Equal(b[header.ICMPv4MinimumSize:], payload) {
					wait.Stop()
					return nil
				}
				continue
			}
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				wait.Stop()
				return fmt.Errorf("icmp read: %s", terr)
			}
			select {
			case <-ready:
			case <-wait.C:
				break read
			}
		}
	}
	return fmt.Errorf("no echo reply from %s within %v", dst, timeout)
}

// transfer is one TCP connection carrying size bytes of a deterministic
// pseudo-random stream that the receiver regenerates and compares.
type transfer struct {
	size     int64
	received atomic.Int64
	recvErr  chan error
	sendErr  chan error
}

func streamFor(seed uint64) *rand.ChaCha8 {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

// startTransfer sends size bytes from from to to over a new TCP connection
// to port; the receiver counts what it verified in received.
func startTransfer(t *testing.T, from, to *node, port uint16, size int64) *transfer {
	t.Helper()
	ln, err := gonet.ListenTCP(to.s, fullAddr(to.addr, port), ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	x := &transfer{size: size, recvErr: make(chan error, 1), sendErr: make(chan error, 1)}
	seed := uint64(size) ^ uint64(port)<<32
	go func() {
		c, err := ln.Accept()
		if err != nil {
			x.recvErr <- fmt.Errorf("accept: %w", err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		x.recvErr <- x.receive(c, streamFor(seed))
	}()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := gonet.DialContextTCP(ctx, from.s, fullAddr(to.addr, port), ipv4.ProtocolNumber)
		if err != nil {
			x.sendErr <- fmt.Errorf("dial: %w", err)
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		x.sendErr <- send(c, streamFor(seed), size)
	}()
	return x
}

func send(c *gonet.TCPConn, src *rand.ChaCha8, size int64) error {
	buf := make([]byte, 64<<10)
	for left := size; left > 0; {
		chunk := buf[:min(int64(len(buf)), left)]
		_, _ = src.Read(chunk)
		if _, err := c.Write(chunk); err != nil {
			return fmt.Errorf("write with %d bytes left: %w", left, err)
		}
		left -= int64(len(chunk))
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("close write: %w", err)
	}
	// The receiver closes once it has verified everything.
	if n, err := io.Copy(io.Discard, c); err != nil || n != 0 {
		return fmt.Errorf("after sending: got %d bytes and %v, want 0 bytes and EOF", n, err)
	}
	return nil
}

func (x *transfer) receive(c net.Conn, want *rand.ChaCha8) error {
	buf := make([]byte, 64<<10)
	exp := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			off := x.received.Load()
			if off+int64(n) > x.size {
				return fmt.Errorf("got more than the %d bytes sent", x.size)
			}
			_, _ = want.Read(exp[:n])
			if i := firstDiff(buf[:n], exp[:n]); i >= 0 {
				return fmt.Errorf("byte %d: got %#x, want %#x", off+int64(i), buf[i], exp[i])
			}
			x.received.Add(int64(n))
		}
		if errors.Is(err, io.EOF) {
			if got := x.received.Load(); got != x.size {
				return fmt.Errorf("EOF after %d bytes, want %d", got, x.size)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %w", x.received.Load(), err)
		}
	}
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return len(a)
}

// waitReceived waits until the receiver has verified at least n bytes.
func (x *transfer) waitReceived(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for x.received.Load() < n {
		select {
		case err := <-x.recvErr:
			t.Fatalf("receiver ended after %d bytes, before %d: %v", x.received.Load(), n, err)
		case err := <-x.sendErr:
			if err != nil {
				t.Fatalf("sender failed after %d bytes received: %v", x.received.Load(), err)
			}
			x.sendErr <- nil // put it back for wait
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("received %d bytes, want %d within a minute", x.received.Load(), n)
		}
	}
}

// wait checks that both ends finished cleanly: every byte arrived, in
// order and intact, and neither side saw a reset.
func (x *transfer) wait(t *testing.T) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for _, ch := range []chan error{x.recvErr, x.sendErr} {
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("transfer of %d bytes (%d verified): %v", x.size, x.received.Load(), err)
			}
		case <-timeout:
			t.Fatalf("transfer of %d bytes: %d verified after 2 minutes", x.size, x.received.Load())
		}
	}
	if got := x.received.Load(); got != x.size {
		t.Fatalf("verified %d bytes, want %d", got, x.size)
	}
}

// goroutineBaseline returns a check that goroutines come back to the count
// now, taken once goroutines of earlier tests have finished exiting.
func goroutineBaseline(t *testing.T) func() {
	before := runtime.NumGoroutine()
	for stable, deadline := 0, time.Now().Add(2*time.Second); stable < 5 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		if now := runtime.NumGoroutine(); now < before {
			before, stable = now, 0
		} else {
			stable++
		}
	}
	return func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			now := runtime.NumGoroutine()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("goroutines: got %d, want <= %d\n%s", now, before, buf)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
