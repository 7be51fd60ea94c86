package appliance

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	ustack "github.com/ulagg/ulagg/stack"
)

// TestRouteBack: a SYN with a route back on its NIC reaches the stack; one
// without is dropped, counted, and named in one ulagg line saying how to
// fix it; more within the period add no line.
func TestRouteBack(t *testing.T) {
	var logs testkit.SyncBuffer
	rb := newRouteBack(slog.New(slog.NewTextHandler(&logs, nil)))
	b := newSYNBudget(config.Limits{})
	g := newSYNGuard(&nullEndpoint{}, b)
	g.back, g.nic = rb, 1
	d := &countingDispatcher{}
	g.Attach(d)
	deliver := func(v6 bool, src, dst []byte) {
		pkt := rxPacket(t, synTestFrame(v6, src, dst, uint8(header.TCPFlagSyn)))
		defer pkt.DecRef()
		g.DeliverNetworkPacket(protoOf(v6), pkt)
	}
	far4 := []byte{10, 9, 0, 5}
	far6 := netip.MustParseAddr("2001:db8::5").AsSlice()
	deliver(false, far4, sgLocal4) // nothing published yet: passes
	if d.count() != 1 {
		t.Fatalf("before any route table: %d delivered, want 1", d.count())
	}
	rb.publish([]ustack.Route{
		{To: netip.MustParsePrefix("10.231.0.0/24"), NIC: 1, Origin: ustack.RouteConnected},
		{To: netip.MustParsePrefix("10.9.0.0/16"), NIC: 2, Origin: ustack.RouteStatic}, // another NIC
	})
	deliver(false, sgLegit4, sgLocal4)
	deliver(false, far4, sgLocal4)
	deliver(false, far4, sgLocal4)
	deliver(true, far6, sgLocal6)
	deliver(true, netip.MustParseAddr("fe80::5").AsSlice(), sgLocal6) // link-local: gVisor needs no route
	if got := d.count(); got != 3 {
		t.Errorf("delivered: got %d, want 3 (the routable SYN, the link-local one and the first)", got)
	}
	if got := rb.drops.Load(); got != 3 {
		t.Errorf("drops: got %d, want 3", got)
	}
	out := logs.String()
	if !strings.Contains(out, `no route to 10.9.0.5 (a reply from 10.231.0.2:7); add one: ulagg route add default GATEWAY`) {
		t.Errorf("log: got %q, want the no-route line for 10.9.0.5", out)
	}
	if n := strings.Count(out, "no route to"); n != 1 {
		t.Errorf("log: %d lines, want 1 per period:\n%s", n, out)
	}
	// The next period's line counts what the last one did not say.
	rb.last.Store(int64(time.Since(rb.epoch)) - int64(noRouteLogEvery))
	deliver(true, far6, sgLocal6)
	if out := logs.String(); !strings.Contains(out, "no route to 2001:db8::5 (a reply from [fd00::2]:7); add one: ulagg route add -inet6 default GATEWAY") ||
		!strings.Contains(out, "similar_suppressed=2") {
		t.Errorf("second period: got %q", out)
	}
}

// TestRouteBackAllocs: the check allocates nothing per SYN, with a route
// back or (once its line is written) without.
func TestRouteBackAllocs(t *testing.T) {
	rb := newRouteBack(slog.New(slog.DiscardHandler))
	rb.publish([]ustack.Route{{To: netip.MustParsePrefix("10.231.0.0/24"), NIC: 1}, {To: netip.MustParsePrefix("fd00::/64"), NIC: 1}})
	g := newSYNGuard(&nullEndpoint{}, newSYNBudget(config.Limits{SYNRate: 10_000_000, SYNBurst: 1_000_000}))
	g.back, g.nic = rb, 1
	g.Attach(&countingDispatcher{})
	ok := rxPacket(t, synTestFrame(false, sgLegit4, sgLocal4, uint8(header.TCPFlagSyn)))
	defer ok.DecRef()
	far := rxPacket(t, synTestFrame(false, []byte{10, 9, 0, 5}, sgLocal4, uint8(header.TCPFlagSyn)))
	defer far.DecRef()
	far6 := rxPacket(t, synTestFrame(true, netip.MustParseAddr("2001:db8::5").AsSlice(), sgLocal6, uint8(header.TCPFlagSyn)))
	defer far6.DecRef()
	g.DeliverNetworkPacket(header.IPv4ProtocolNumber, far) // its line
	if n := testing.AllocsPerRun(1000, func() {
		g.DeliverNetworkPacket(header.IPv4ProtocolNumber, ok)
		g.DeliverNetworkPacket(header.IPv4ProtocolNumber, far)
		g.DeliverNetworkPacket(header.IPv6ProtocolNumber, far6)
	}); n != 0 {
		t.Errorf("%v allocations per run", n)
	}
}
