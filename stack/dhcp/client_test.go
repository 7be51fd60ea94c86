package dhcp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/link/ethernet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ulagg/ulagg/internal/testkit"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/dhcp"
)

var (
	serverAddr = netip.MustParseAddr("10.9.0.1")
	poolAddr   = netip.MustParseAddr("10.9.0.50")
)

// seen is a DHCP message the server side of the wire saw.
type seen struct {
	typ       dhcpv4.MessageType
	ciaddr    netip.Addr
	broadcast bool // sent to 255.255.255.255
}

// fakeServer answers DHCP on its own gVisor stack: every DISCOVER with an
// OFFER of poolAddr, every REQUEST with an ACK (or a NAK when nak is set),
// nothing at all when silent.
type fakeServer struct {
	// mu guards the rest; the fields are also read and written in set's
	// callbacks, under mu, where checklocks cannot follow.
	mu       sync.Mutex
	silent   bool          // +checklocksignore
	nak      bool          // +checklocksignore
	offer    netip.Addr    // +checklocksignore
	lease    time.Duration // +checklocksignore
	t1       time.Duration // +checklocksignore
	t2       time.Duration // +checklocksignore
	mtu      uint16        // +checklocksignore
	received []seen        // +checklocksignore: from the wire observer, in order

	conn *gonet.UDPConn
}

func (f *fakeServer) set(fn func(f *fakeServer)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeServer) seen() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.received)
}

func (f *fakeServer) count(typ dhcpv4.MessageType) int {
	n := 0
	for _, s := range f.seen() {
		if s.typ == typ {
			n++
		}
	}
	return n
}

// observe records every client-to-server DHCP message crossing the wire.
func (f *fakeServer) observe(frame []byte) {
	if len(frame) < header.EthernetMinimumSize+header.IPv4MinimumSize+header.UDPMinimumSize {
		return
	}
	eth := header.Ethernet(frame)
	if eth.Type() != header.IPv4ProtocolNumber {
		return
	}
	ip := header.IPv4(frame[header.EthernetMinimumSize:])
	if ip.TransportProtocol() != header.UDPProtocolNumber {
		return
	}
	u := header.UDP(ip.Payload())
	if u.DestinationPort() != dhcp.ServerPort {
		return
	}
	msg, err := dhcpv4.FromBytes(u.Payload())
	if err != nil {
		return
	}
	ci, _ := netip.AddrFromSlice(msg.ClientIPAddr.To4())
	f.mu.Lock()
	f.received = append(f.received, seen{typ: msg.MessageType(), ciaddr: ci, broadcast: ip.DestinationAddress() == header.IPv4Broadcast})
	f.mu.Unlock()
}

func (f *fakeServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, _, err := f.conn.ReadFrom(buf)
		if err != nil {
			return
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			continue
		}
		f.mu.Lock()
		silent, nak, offer, lease, t1, t2, mtu := f.silent, f.nak, f.offer, f.lease, f.t1, f.t2, f.mtu
		f.mu.Unlock()
		if silent {
			continue
		}
		var typ dhcpv4.MessageType
		switch req.MessageType() {
		case dhcpv4.MessageTypeDiscover:
			typ = dhcpv4.MessageTypeOffer
		case dhcpv4.MessageTypeRequest:
			typ = dhcpv4.MessageTypeAck
			if nak {
				typ = dhcpv4.MessageTypeNak
			}
		default:
			continue
		}
		mods := []dhcpv4.Modifier{
			dhcpv4.WithMessageType(typ),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(serverAddr.AsSlice())),
		}
		if typ != dhcpv4.MessageTypeNak {
			mods = append(mods,
				dhcpv4.WithYourIP(offer.AsSlice()),
				dhcpv4.WithNetmask(net.CIDRMask(24, 32)),
				dhcpv4.WithRouter(serverAddr.AsSlice()),
				dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(lease)),
				dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(t1)),
				dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(t2)),
				dhcpv4.WithGeneric(dhcpv4.OptionInterfaceMTU, []byte{byte(mtu >> 8), byte(mtu)}),
			)
		}
		reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
		if err != nil {
			continue
		}
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcp.ClientPort}
		if !req.ClientIPAddr.IsUnspecified() && !req.IsBroadcast() {
			dst.IP = req.ClientIPAddr
		}
		_, _ = f.conn.WriteTo(reply.ToBytes(), dst)
	}
}

// rig is a client stack and a server stack joined by an in-memory cable:
// two gVisor channel endpoints under Ethernet framing, frames shuttled
// between them.
type rig struct {
	clock  *testkit.FakeClock
	client *gstack.Stack
	server *fakeServer
	c      *dhcp.Client

	mu sync.Mutex
	// +checklocks:mu
	events []dhcp.Event
}

const (
	clientMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x0c\x01")
	serverMAC = tcpip.LinkAddress("\x02\x00\x00\x00\x05\x01")
)

// newRig builds the rig; setup changes the server before the client starts.
func newRig(t *testing.T, setup ...func(*fakeServer)) *rig {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	mk := func(name string, ep *channel.Endpoint, addrs []netip.Prefix) *gstack.Stack {
		s, err := ustack.NewNetstack()
		if err != nil {
			t.Fatal(err)
		}
		if err := ustack.AddInterface(s, 1, name, ethernet.New(ep), addrs); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Close()
			s.Wait()
		})
		return s
	}
	r := &rig{clock: testkit.NewFakeClock(time.Unix(1_000_000, 0))}
	ca, sa := channel.New(256, 1500, clientMAC), channel.New(256, 1500, serverMAC)
	r.client = mk("lagg0", ca, nil)
	ss := mk("srv0", sa, []netip.Prefix{netip.PrefixFrom(serverAddr, 24)})
	r.server = &fakeServer{offer: poolAddr, lease: 100 * time.Second, t1: 50 * time.Second, t2: 80 * time.Second, mtu: 1400}
	var shuttles sync.WaitGroup
	shuttles.Add(2)
	go func() { defer shuttles.Done(); shuttle(ctx, ca, sa, r.server.observe) }()
	go func() { defer shuttles.Done(); shuttle(ctx, sa, ca, nil) }()
	t.Cleanup(func() { cancel(); shuttles.Wait() })

	var wq waiter.Queue
	ep, terr := ss.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		t.Fatal(terr)
	}
	ep.SocketOptions().SetBroadcast(true)
	if terr := ep.Bind(tcpip.FullAddress{NIC: 1, Port: dhcp.ServerPort}); terr != nil {
		t.Fatal(terr)
	}
	r.server.conn = gonet.NewUDPConn(&wq, ep)
	for _, fn := range setup {
		fn(r.server)
	}
	done := make(chan struct{})
	go func() { defer close(done); r.server.serve() }()
	t.Cleanup(func() { r.server.conn.Close(); <-done })

	c, err := dhcp.New(dhcp.Config{
		Stack: r.client, NIC: 1, Clock: r.clock, Logger: quiet,
		OnEvent: func(ev dhcp.Event) {
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	r.c = c
	return r
}

func (r *rig) kinds() []dhcp.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var k []dhcp.EventKind
	for _, e := range r.events {
		k = append(k, e.Kind)
	}
	return k
}

func (r *rig) lastEvent() dhcp.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.events[len(r.events)-1]
}

func (r *rig) waitState(t *testing.T, want dhcp.State) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "state "+want.String(), func() bool { return r.c.Status().State == want })
}

// hasAddr reports whether the client NIC has addr.
func (r *rig) hasAddr(addr netip.Prefix) bool {
	want := ustack.ProtocolAddress(addr).AddressWithPrefix
	for _, pa := range r.client.AllAddresses()[1] {
		if pa.AddressWithPrefix == want {
			return true
		}
	}
	return false
}

// advanceTo moves the fake clock to t.
func (r *rig) advanceTo(t time.Time) { r.advance(t.Sub(r.clock.Now())) }

// advance moves the clock by d once the client has armed its next timer.
// The client arms it after sending, from the time it read before: moving
// the clock in between (the test saw the frame) would push the timer d
// too far.
func (r *rig) advance(d time.Duration) {
	testkit.Poll(time.Second, func() bool { return r.clock.Pending() > 0 })
	r.clock.Advance(d)
}

func TestClientAcquiresLease(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	st := r.c.Status()
	want := netip.PrefixFrom(poolAddr, 24)
	if !st.HasLease || st.Lease.Address != want || st.Lease.Server != serverAddr || st.Lease.Router != serverAddr || st.Lease.MTU != 1400 {
		t.Fatalf("lease: got %+v, want %s from %s, router %s, MTU 1400", st.Lease, want, serverAddr, serverAddr)
	}
	if st.Lease.Time != 100*time.Second || st.Lease.T1 != 50*time.Second || st.Lease.T2 != 80*time.Second {
		t.Errorf("times: got lease %s T1 %s T2 %s, want 100s 50s 80s", st.Lease.Time, st.Lease.T1, st.Lease.T2)
	}
	if !r.hasAddr(want) {
		t.Errorf("NIC addresses %v lack %s", r.client.AllAddresses()[1], want)
	}
	if got := r.kinds(); !slices.Equal(got, []dhcp.EventKind{dhcp.Acquired}) {
		t.Errorf("events: got %v, want [acquired]", got)
	}
	// DISCOVER and REQUEST went out as broadcasts from 0.0.0.0.
	got := r.server.seen()
	if len(got) < 2 || got[0].typ != dhcpv4.MessageTypeDiscover || got[1].typ != dhcpv4.MessageTypeRequest || !got[0].broadcast || !got[1].broadcast || got[1].ciaddr.IsValid() && !got[1].ciaddr.IsUnspecified() {
		t.Errorf("server saw %+v, want a broadcast DISCOVER then REQUEST without ciaddr", got)
	}
}

func TestClientRenewsAtT1(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	start := r.c.Status().Lease.Start
	r.server.set(func(f *fakeServer) { f.lease = 200 * time.Second; f.t1 = 100 * time.Second; f.t2 = 150 * time.Second })
	r.advanceTo(start.Add(50 * time.Second))
	testkit.WaitFor(t, 5*time.Second, "renewal", func() bool { return r.c.Status().Renewals == 1 })
	r.waitState(t, dhcp.Bound)
	st := r.c.Status()
	if st.Lease.Time != 200*time.Second || !st.Lease.Start.Equal(start.Add(50*time.Second)) {
		t.Errorf("renewed lease: got %s from %s, want 200s from %s", st.Lease.Time, st.Lease.Start, start.Add(50*time.Second))
	}
	ev := r.lastEvent()
	if ev.Kind != dhcp.Renewed || ev.Old.Time != 100*time.Second {
		t.Errorf("event: got %+v, want renewed from the 100s lease", ev)
	}
	last := r.server.seen()[len(r.server.seen())-1]
	if last.typ != dhcpv4.MessageTypeRequest || last.broadcast || last.ciaddr != poolAddr {
		t.Errorf("renewal: got %+v, want a unicast REQUEST with ciaddr %s", last, poolAddr)
	}
}

func TestClientRebindsThenExpires(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	lease := r.c.Status().Lease
	r.server.set(func(f *fakeServer) { f.silent = true })

	unicasts := func() int {
		n := 0
		for _, s := range r.server.seen() {
			if s.typ == dhcpv4.MessageTypeRequest && !s.broadcast && s.ciaddr == poolAddr {
				n++
			}
		}
		return n
	}
	r.advanceTo(lease.RenewAt())
	r.waitState(t, dhcp.Renewing)
	testkit.WaitFor(t, 5*time.Second, "a unicast REQUEST at T1", func() bool { return unicasts() == 1 })
	// T1 50 s, T2 80 s: the retransmission waits max(half of the 30 s
	// left, T1/2) = 25 s.
	r.advance(24 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if got := unicasts(); got != 1 {
		t.Fatalf("unicast REQUESTs 24 s after T1: got %d, want 1", got)
	}
	r.advance(time.Second)
	testkit.WaitFor(t, 5*time.Second, "a second unicast REQUEST 25 s after T1", func() bool { return unicasts() == 2 })
	r.advanceTo(lease.RebindAt())
	r.waitState(t, dhcp.Rebinding)
	testkit.WaitFor(t, 5*time.Second, "a broadcast REQUEST with ciaddr", func() bool {
		return slices.ContainsFunc(r.server.seen(), func(s seen) bool {
			return s.typ == dhcpv4.MessageTypeRequest && s.broadcast && s.ciaddr == poolAddr
		})
	})
	if !r.hasAddr(lease.Address) {
		t.Fatal("address gone before the lease expired")
	}
	r.advanceTo(lease.ExpiresAt())
	testkit.WaitFor(t, 5*time.Second, "lease lost", func() bool { return r.c.Status().Lost == 1 })
	if r.hasAddr(lease.Address) {
		t.Error("address still on the NIC after the lease expired")
	}
	if st := r.c.Status(); st.HasLease || st.State != dhcp.Selecting {
		t.Errorf("after expiry: got state %s lease %v, want selecting without lease", st.State, st.HasLease)
	}
	// The server comes back: the client gets a lease again.
	discovers := r.server.count(dhcpv4.MessageTypeDiscover)
	r.server.set(func(f *fakeServer) { f.silent = false })
	r.advance(4 * time.Second)
	r.waitState(t, dhcp.Bound)
	if got := r.server.count(dhcpv4.MessageTypeDiscover); got <= discovers {
		t.Errorf("DISCOVERs: got %d, want more than %d", got, discovers)
	}
	if got := r.kinds(); !slices.Equal(got, []dhcp.EventKind{dhcp.Acquired, dhcp.Lost, dhcp.Acquired}) {
		t.Errorf("events: got %v, want [acquired lost acquired]", got)
	}
}

func TestClientNAKOnRenewLosesLease(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	lease := r.c.Status().Lease
	r.server.set(func(f *fakeServer) { f.nak = true })
	r.advanceTo(lease.RenewAt())
	testkit.WaitFor(t, 5*time.Second, "NAK", func() bool { return r.c.Status().NAKs >= 1 })
	testkit.WaitFor(t, 5*time.Second, "lease lost", func() bool { return r.c.Status().Lost == 1 })
	if r.hasAddr(lease.Address) {
		t.Error("address still on the NIC after a NAK")
	}
	// A new address is offered; the client takes it.
	next := netip.MustParseAddr("10.9.0.51")
	r.server.set(func(f *fakeServer) { f.nak = false; f.offer = next })
	r.advance(4 * time.Second)
	r.waitState(t, dhcp.Bound)
	if got := r.c.Status().Lease.Address; got != netip.PrefixFrom(next, 24) || !r.hasAddr(got) {
		t.Errorf("new lease: got %s (on NIC %v), want %s", got, r.hasAddr(got), next)
	}
}

func TestClientRetransmitsDiscover(t *testing.T) {
	r := newRig(t, func(f *fakeServer) { f.silent = true })
	discovers := func() int { return r.server.count(dhcpv4.MessageTypeDiscover) }
	testkit.WaitFor(t, 5*time.Second, "first DISCOVER", func() bool { return discovers() == 1 })
	r.advance(3 * time.Second)
	time.Sleep(50 * time.Millisecond)
	if got := discovers(); got != 1 {
		t.Fatalf("DISCOVERs after 3 s: got %d, want 1 (first retransmission at 4 s)", got)
	}
	r.advance(time.Second)
	testkit.WaitFor(t, 5*time.Second, "second DISCOVER", func() bool { return discovers() == 2 })
	r.advance(8 * time.Second)
	testkit.WaitFor(t, 5*time.Second, "third DISCOVER after 8 s more", func() bool { return discovers() == 3 })
	if st := r.c.Status(); st.State != dhcp.Selecting || st.HasLease {
		t.Errorf("state %s lease %v, want selecting without lease", st.State, st.HasLease)
	}
}

func TestClientReleasesOnClose(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	addr := r.c.Status().Lease.Address
	r.c.Close()
	testkit.WaitFor(t, 5*time.Second, "RELEASE", func() bool { return r.server.count(dhcpv4.MessageTypeRelease) == 1 })
	rel := r.server.seen()[len(r.server.seen())-1]
	if rel.typ != dhcpv4.MessageTypeRelease || rel.ciaddr != poolAddr || rel.broadcast {
		t.Errorf("release: got %+v, want unicast RELEASE of %s", rel, poolAddr)
	}
	if r.hasAddr(addr) {
		t.Error("address still on the NIC after Close")
	}
	if st := r.c.Status(); st.State != dhcp.Stopped || st.HasLease {
		t.Errorf("after Close: got %s lease %v, want stopped without lease", st.State, st.HasLease)
	}
	if got := r.kinds(); !slices.Equal(got, []dhcp.EventKind{dhcp.Acquired, dhcp.Released}) {
		t.Errorf("events: got %v, want [acquired released]", got)
	}
	r.c.Close() // idempotent
}

// shuttle carries frames from one endpoint to the other as a cable would,
// showing each to observe.
func shuttle(ctx context.Context, from, to *channel.Endpoint, observe func([]byte)) {
	for {
		pkt := from.ReadContext(ctx)
		if pkt == nil {
			return
		}
		buf := pkt.ToBuffer()
		pkt.DecRef()
		if observe != nil {
			observe(buf.Flatten())
		}
		in := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buf})
		to.InjectInbound(0, in)
		in.DecRef()
	}
}

func TestClientIgnoresGarbage(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	bcast := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcp.ClientPort}
	// Not DHCP; a BOOTREQUEST; a reply for another transaction.
	other, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr(clientMAC)), dhcpv4.WithMessageType(dhcpv4.MessageTypeNak))
	if err != nil {
		t.Fatal(err)
	}
	other.OpCode = dhcpv4.OpcodeBootReply
	req, _ := dhcpv4.New(dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	for _, b := range [][]byte{{1, 2, 3}, make([]byte, 600), req.ToBytes(), other.ToBytes()} {
		if _, err := r.server.conn.WriteTo(b, bcast); err != nil {
			t.Fatal(err)
		}
	}
	testkit.WaitFor(t, 5*time.Second, "4 replies ignored", func() bool { return r.c.Status().Ignored >= 4 })
	if st := r.c.Status(); st.State != dhcp.Bound || st.NAKs != 0 || st.Lost != 0 {
		t.Errorf("after garbage: %+v, want still bound, no NAK counted", st)
	}
}

// TestClientNAKBackoff: a server that refuses every REQUEST gets one
// DISCOVER per back-off period, not a storm.
func TestClientNAKBackoff(t *testing.T) {
	r := newRig(t)
	r.waitState(t, dhcp.Bound)
	lease := r.c.Status().Lease
	r.server.set(func(f *fakeServer) { f.nak = true })
	discovers := r.server.count(dhcpv4.MessageTypeDiscover)
	r.advanceTo(lease.RenewAt())
	testkit.WaitFor(t, 5*time.Second, "lease lost to the NAK", func() bool { return r.c.Status().Lost == 1 })
	time.Sleep(100 * time.Millisecond)
	if got := r.server.count(dhcpv4.MessageTypeDiscover); got != discovers {
		t.Fatalf("DISCOVERs right after the NAK: %d, want none before the back-off", got-discovers)
	}
	r.advance(4 * time.Second)
	testkit.WaitFor(t, 5*time.Second, "a second NAK", func() bool { return r.c.Status().NAKs == 2 })
	time.Sleep(100 * time.Millisecond)
	if got := r.server.count(dhcpv4.MessageTypeDiscover) - discovers; got != 1 {
		t.Errorf("DISCOVERs after one back-off: %d, want 1", got)
	}
}

// TestClientsOnTwoNICs: every interface of a stack runs its own client (a
// lagg and a VLAN on it, both "dhcp"); port 68 is bound per NIC.
func TestClientsOnTwoNICs(t *testing.T) {
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(); s.Wait() })
	for nic := tcpip.NICID(1); nic <= 2; nic++ {
		mac := tcpip.LinkAddress([]byte{2, 0, 0, 0, 0x0c, byte(nic)})
		if err := ustack.AddInterface(s, nic, fmt.Sprintf("if%d", nic), ethernet.New(channel.New(16, 1500, mac)), nil); err != nil {
			t.Fatal(err)
		}
	}
	quiet := slog.New(slog.DiscardHandler)
	clock := testkit.NewFakeClock(time.Unix(1_000_000, 0))
	for nic := tcpip.NICID(1); nic <= 2; nic++ {
		c, err := dhcp.New(dhcp.Config{Stack: s, NIC: nic, Clock: clock, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(); err != nil {
			t.Fatalf("client on NIC %d: %v", nic, err)
		}
		t.Cleanup(c.Close)
	}
}
