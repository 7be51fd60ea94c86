package lagg_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	ustack "github.com/ulagg/ulagg/stack"
)

// node is one gVisor stack whose only NIC is a lagg.
type node struct {
	s    *gstack.Stack
	l    *lagg.Lagg
	addr netip.Prefix
}

const nicID = 1

func mac(side, i int) tcpip.LinkAddress {
	return tcpip.LinkAddress([]byte{0x02, 0, 0, 0, byte(side), byte(i + 1)})
}

// newNode builds a stack over a lagg with opts, with the given ports.
func newNode(t *testing.T, opts lagg.Options, addr string, ports []linkep.Port) *node {
	t.Helper()
	l, err := lagg.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if err := l.AddPort(p, lagg.DefaultPriority); err != nil {
			t.Fatal(err)
		}
	}
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	n := &node{s: s, l: l, addr: netip.MustParsePrefix(addr)}
	if err := ustack.AddInterface(s, nicID, opts.Name, l, []netip.Prefix{n.addr}); err != nil {
		t.Fatal(err)
	}
	l.SetAnnouncer(func() { _ = ustack.Announce(s, nicID) })
	t.Cleanup(n.close)
	return n
}

func (n *node) close() {
	n.s.Close()
	n.s.Wait()
	n.l.Close()
}

// pair is two lagg nodes joined by n wires; wire i joins port i of each.
type pair struct {
	a, b  *node
	wires []*linkep.Wire
}

// uniq keeps port names unique across tests in one process (ports are
// registered by name, as host interfaces are).
var uniq int

func newPair(t *testing.T, proto string, nports int, tweak func(side int, o *lagg.Options)) *pair {
	t.Helper()
	uniq++
	var aPorts, bPorts []linkep.Port
	var wires []*linkep.Wire
	for i := 0; i < nports; i++ {
		w := linkep.NewWire(fmt.Sprintf("a%d.%d", uniq, i), fmt.Sprintf("b%d.%d", uniq, i), mac(1, i), mac(2, i), linkep.WireOptions{SpeedMbps: 1000})
		wires = append(wires, w)
		aPorts = append(aPorts, w.A)
		bPorts = append(bPorts, w.B)
	}
	oa, ob := lagg.DefaultOptions(fmt.Sprintf("laggA%d", uniq)), lagg.DefaultOptions(fmt.Sprintf("laggB%d", uniq))
	oa.Proto, ob.Proto = proto, proto
	if tweak != nil {
		tweak(0, &oa)
		tweak(1, &ob)
	}
	return &pair{
		a:     newNode(t, oa, "10.0.0.1/24", aPorts),
		b:     newNode(t, ob, "10.0.0.2/24", bPorts),
		wires: wires,
	}
}

func fullAddr(p netip.Prefix, port uint16) tcpip.FullAddress {
	return tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(p.Addr().AsSlice()), Port: port}
}

// listenEcho runs a TCP echo server on n at port until the test ends.
func listenEcho(t *testing.T, n *node, port uint16) {
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
				buf := make([]byte, 64<<10)
				for {
					k, err := c.Read(buf)
					if k > 0 {
						if _, werr := c.Write(buf[:k]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
}

// goroutineBaseline returns a check that goroutines come back to within
// slack of the count now.
func goroutineBaseline(t *testing.T) func() {
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
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
