package appliance_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// lockedLog is a log sink safe for concurrent writes.
type lockedLog struct {
	mu sync.Mutex
	// +checklocks:mu
	b strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// noRouteLog sends the rig's no-route lines to a buffer it returns.
func (r *ctlRig) noRouteLog() *lockedLog {
	l := &lockedLog{}
	appliance.SetNoRouteLogger(r.a, slog.New(slog.NewTextHandler(l, nil)))
	return l
}

// peerAlias gives the peer's NIC nic the address 10.9.0.5/24 too: a
// client on a subnet the appliance has no route to, on the same wire.
func (r *ctlRig) peerAlias(nic tcpip.NICID) tcpip.Address {
	r.t.Helper()
	a := tcpip.AddrFrom4([4]byte{10, 9, 0, 5})
	if err := r.peer.AddProtocolAddress(nic, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: a, PrefixLen: 24}}, gstack.AddressProperties{}); err != nil {
		r.t.Fatal(err)
	}
	return a
}

// TestVLANNoRouteBack: a SYN from a source the appliance has no route to,
// arriving on a VLAN, is dropped by the SYN guard, counted and logged, as
// on a lagg; an on-link route on the VLAN lets the client in.
func TestVLANNoRouteBack(t *testing.T) {
	r := newCtlRig(t, "", "failover", "wm0", "wm1")
	r.mustIfconfig("lagg0 create", "lagg0 laggproto failover laggport wm0 laggport wm1 192.168.1.1/24")
	r.waitRunning("lagg0", 5*time.Second)
	r.peerVLAN(2, 100, "10.1.0.2/24")
	r.mustIfconfig("vlan100 create vlan 100 vlanif lagg0 inet 10.1.0.1/24")
	if !r.reaches("10.1.0.1", 7, 5*time.Second) {
		t.Fatal("vlan100 unreachable from its own subnet")
	}
	logs := r.noRouteLog()
	from := r.peerAlias(2)
	dial := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := gonet.DialTCPWithBind(ctx, r.peer, tcpip.FullAddress{NIC: 2, Addr: from},
			tcpip.FullAddress{NIC: 2, Addr: tcpip.AddrFrom4([4]byte{10, 1, 0, 1}), Port: 7}, ipv4.ProtocolNumber)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(time.Second); err == nil {
		t.Fatal("connected to vlan100 from 10.9.0.5 without a route back")
	}
	if n := r.a.NoRouteDrops(); n == 0 {
		t.Errorf("no-route drops: got 0, want the client's SYNs on vlan100")
	}
	if out, want := logs.String(), "no route to 10.9.0.5 (a reply from 10.1.0.1:7); add one: ulagg route add default GATEWAY"; !strings.Contains(out, want) {
		t.Errorf("log: got %q, want %q", out, want)
	}
	r.mustRoute("add -net 10.9.0.0/24 -ifp vlan100")
	testkit.WaitFor(t, 10*time.Second, "connected from 10.9.0.5 over the on-link route on vlan100", func() bool { return dial(2*time.Second) == nil })
}

// TestUDPEchoNoRoute: a udp-echo reply to a client the appliance has no
// route to is counted (NoRouteReplyDrops, ulagg_stack_drops_total
// reason="no_route_reply") and logged with the SYNs' line, not ignored;
// with a route the client gets its echo.
func TestUDPEchoNoRoute(t *testing.T) {
	r := newCtlRig(t, routeRigTOML+`
[[service]]
kind = "udp-echo"
port = 7
`, "failover", "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	logs := r.noRouteLog()
	from := r.peerAlias(1)
	c, err := gonet.DialUDP(r.peer, &tcpip.FullAddress{NIC: 1, Addr: from, Port: 40007},
		&tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 168, 1, 1}), Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func() bool {
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		buf := make([]byte, 16)
		n, err := c.Read(buf)
		var ne net.Error
		if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Fatal(err)
		}
		return err == nil && string(buf[:n]) == "ping"
	}
	if echo() {
		t.Fatal("echo reached 10.9.0.5 without a route")
	}
	testkit.WaitFor(t, 5*time.Second, "the unsent reply counted", func() bool { return r.a.NoRouteReplyDrops() > 0 })
	if out, want := logs.String(), "no route to 10.9.0.5 (a udp-echo reply from port 7); add one: ulagg route add default GATEWAY"; !strings.Contains(out, want) {
		t.Errorf("log: got %q, want %q", out, want)
	}
	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	m.Close()
	if got := value(t, fams, "ulagg_stack_drops_total", "reason=no_route_reply"); got < 1 {
		t.Errorf(`ulagg_stack_drops_total{reason="no_route_reply"}: got %v, want >= 1`, got)
	}
	r.mustRoute("add -net 10.9.0.0/24 -ifp lagg0")
	testkit.WaitFor(t, 10*time.Second, "the echo back over the on-link route", echo)
}
