package host_test

import (
	"errors"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/host"
)

// afEnv is a veth pair: pname (for the port, no IP) in ns port, kname with
// 10.201.0.1/24 in ns peer.
type afEnv struct {
	port, peer   *htNet
	pname, kname string
}

var (
	afKernelIP = [4]byte{10, 201, 0, 1}
	afStackIP  = [4]byte{10, 201, 0, 2}
	laggMAC    = tcpip.LinkAddress("\x02\x75\x6c\x61\x67\x67") // locally administered, as a lagg would pick
)

func newAFEnv(t *testing.T) *afEnv {
	htRequireRoot(t)
	id := htID(t)
	e := &afEnv{
		port:  htNewNet(t, "ulgt-"+id+"-p"),
		peer:  htNewNet(t, "ulgt-"+id+"-k"),
		pname: "ulgt" + id + "p",
		kname: "ulgt" + id + "k",
	}
	htVeth(t, e.port, e.pname, e.peer, e.kname)
	e.peer.addAddr(t, e.kname, "10.201.0.1/24")
	return e
}

func (e *afEnv) open(t *testing.T, opts host.AFPacketOptions) *host.AFPacket {
	t.Helper()
	opts.Netns = e.port.name
	p, err := host.OpenAFPacket(e.pname, opts)
	if err != nil {
		t.Fatalf("OpenAFPacket: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestAFPacketTraffic(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})

	host := e.port.link(t, e.pname).Attrs()
	if host.Flags&net.FlagUp == 0 {
		t.Error("interface not brought admin up by OpenAFPacket")
	}
	if got, want := p.LinkAddress(), tcpip.LinkAddress(host.HardwareAddr); got != want {
		t.Errorf("LinkAddress = %v, want the interface MAC %v", got, want)
	}
	if got := p.SpeedMbps(); got != 10000 {
		t.Errorf("SpeedMbps = %d, want 10000 (veth)", got)
	}
	if got := p.OriginalMTU(); got != 1500 {
		t.Errorf("OriginalMTU = %d, want 1500", got)
	}
	if p.SupportedGSO() != stack.HostGSOSupported || p.GSOMaxSize() != 1<<16 {
		t.Errorf("GSO = %v/%d, want host GSO/65536", p.SupportedGSO(), p.GSOMaxSize())
	}
	htEventually(t, "link up", p.LinkUp)

	// Use a MAC the host interface does not own, as a lagg does.
	p.SetLinkAddress(laggMAC)
	s, stop := htStack(t, p, afStackIP)
	htEchoServer(t, e.peer, "10.201.0.1:7")

	if err := htPing(t, e.peer, afStackIP, 5*time.Second); err != nil {
		t.Fatalf("kernel -> gVisor ping: %v", err)
	}
	rx := e.rxStats(t)
	htTCPEcho(t, s, afKernelIP, 7, 1<<20)
	// Host GSO: the kernel gets TCP super-frames from us.
	if avg := e.rxStats(t).avgSince(rx); avg < 4000 {
		t.Errorf("average frame the peer received: %d bytes, want GSO-sized (> 4000)", avg)
	}

	// A unicast frame for another MAC must not stop receive.
	peerMAC := e.peer.link(t, e.kname).Attrs().HardwareAddr
	for range 3 {
		htSendRaw(t, e.peer, e.kname, htForeignFrame(peerMAC, afStackIP))
	}
	if err := htPing(t, e.peer, afStackIP, 5*time.Second); err != nil {
		t.Fatalf("ping after foreign frames: %v", err)
	}

	// Admin down makes the kernel report ENETDOWN to the socket, which ends
	// fdbased's dispatcher; the port must restart receive.
	ev := htWatch(p)
	if err := e.port.nl.LinkSetDown(e.port.link(t, e.pname)); err != nil {
		t.Fatal(err)
	}
	ev.next(t, isLink(false), "link down")
	if err := e.port.nl.LinkSetUp(e.port.link(t, e.pname)); err != nil {
		t.Fatal(err)
	}
	ev.next(t, isLink(true), "link up")
	if err := htPing(t, e.peer, afStackIP, 5*time.Second); err != nil {
		t.Fatalf("ping after admin down/up: %v", err)
	}
	htTCPEcho(t, s, afKernelIP, 7, 64<<10)

	stop()
	if p.IsAttached() {
		t.Error("port still attached after the stack closed")
	}
	if flags := e.port.link(t, e.pname).Attrs().Flags; flags&net.FlagUp != 0 {
		t.Error("Close did not put the interface back admin down")
	}
}

func TestAFPacketNoGSO(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{DisableGSO: true, SpeedMbps: 2500})
	if p.SupportedGSO() != stack.GSONotSupported || p.GSOMaxSize() != 0 {
		t.Errorf("GSO = %v/%d, want none", p.SupportedGSO(), p.GSOMaxSize())
	}
	if got := p.SpeedMbps(); got != 2500 {
		t.Errorf("SpeedMbps = %d, want the 2500 override", got)
	}
	htEventually(t, "link up", p.LinkUp)
	p.SetLinkAddress(laggMAC)
	s, _ := htStack(t, p, afStackIP)
	htEchoServer(t, e.peer, "10.201.0.1:7")
	rx := e.rxStats(t)
	htTCPEcho(t, s, afKernelIP, 7, 256<<10)
	if avg := e.rxStats(t).avgSince(rx); avg > 1514 {
		t.Errorf("average frame the peer received: %d bytes, want at most 1514 without GSO", avg)
	}
}

type htRxStats struct{ bytes, packets uint64 }

// rxStats reads what the kernel side has received.
func (e *afEnv) rxStats(t *testing.T) htRxStats {
	st := e.peer.link(t, e.kname).Attrs().Statistics
	return htRxStats{st.RxBytes, st.RxPackets}
}

func (s htRxStats) avgSince(before htRxStats) uint64 {
	if s.packets == before.packets {
		return 0
	}
	return (s.bytes - before.bytes) / (s.packets - before.packets)
}

// htDispatcher records what a port delivers.
type htDispatcher struct {
	mu     sync.Mutex
	protos []tcpip.NetworkProtocolNumber
}

func (d *htDispatcher) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	d.mu.Lock()
	d.protos = append(d.protos, proto)
	d.mu.Unlock()
}

func (*htDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

func (d *htDispatcher) has(proto tcpip.NetworkProtocolNumber) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.protos, proto)
}

func htFrame(dst, src []byte, etherType uint16) []byte {
	f := make([]byte, 60)
	copy(f, dst)
	copy(f[6:], src)
	f[12], f[13] = byte(etherType>>8), byte(etherType)
	return f
}

// TestAFPacketReattach: after Attach(nil) a port takes a new dispatcher
// (a fresh fdbased endpoint underneath); LACPDUs reach it.
func TestAFPacketReattach(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	src := e.peer.link(t, e.kname).Attrs().HardwareAddr
	slow := []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}

	var d1, d2 htDispatcher
	p.Attach(&d1)
	htSendRaw(t, e.peer, e.kname, htFrame(slow, src, 0x8809))
	htEventually(t, "LACPDU on the first dispatcher", func() bool { return d1.has(0x8809) })

	p.Attach(nil)
	if p.IsAttached() {
		t.Fatal("IsAttached after Attach(nil)")
	}
	p.Attach(&d2)
	htSendRaw(t, e.peer, e.kname, htFrame(slow, src, 0x88b5))
	htEventually(t, "frame on the second dispatcher", func() bool { return d2.has(0x88b5) })
	if d1.has(0x88b5) {
		t.Error("the detached dispatcher got a frame")
	}
	p.Attach(nil)
	p.Close()
	p.Close() // idempotent
}

// TestAFPacketWrite sends through a detached port without allocating, and
// not after Close.
func TestAFPacketWrite(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	list, release := htTestFrameList(p.LinkAddress(), p.AddHeader)
	defer release()
	if n, err := p.WritePackets(list); n != 1 || err != nil {
		t.Fatalf("WritePackets = %d, %v; want 1, nil", n, err)
	}
	if allocs := testing.AllocsPerRun(200, func() { p.WritePackets(list) }); allocs != 0 {
		t.Errorf("WritePackets allocates %.1f times per call, want 0", allocs)
	}
	p.Close()
	if n, err := p.WritePackets(list); n != 0 || err == nil {
		t.Errorf("WritePackets after Close = %d, %v; want an error", n, err)
	}
}

func TestAFPacketPeerLinkEvents(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	ev := htWatch(p)
	htEventually(t, "link up", p.LinkUp)
	peer := e.peer.link(t, e.kname)

	var lat []time.Duration
	for i := range 20 {
		start := time.Now()
		if err := e.peer.nl.LinkSetDown(peer); err != nil {
			t.Fatal(err)
		}
		ev.next(t, isLink(false), "link down")
		lat = append(lat, time.Since(start))
		if p.LinkUp() {
			t.Fatalf("round %d: LinkUp true after the peer went down", i)
		}
		if err := e.peer.nl.LinkSetUp(peer); err != nil {
			t.Fatal(err)
		}
		ev.next(t, isLink(true), "link up")
		if !p.LinkUp() {
			t.Fatalf("round %d: LinkUp false after the peer came up", i)
		}
	}
	slices.Sort(lat)
	t.Logf("peer down -> LinkChanged: median %v, min %v, max %v (n=%d)", lat[len(lat)/2], lat[0], lat[len(lat)-1], len(lat))
}

func TestAFPacketMTU(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	ev := htWatch(p)
	hostMTU := func() int { return e.port.link(t, e.pname).Attrs().MTU }
	setHostMTU := func(mtu int) {
		t.Helper()
		if err := e.port.nl.LinkSetMTU(e.port.link(t, e.pname), mtu); err != nil {
			t.Fatal(err)
		}
	}

	p.Join("lagg0")
	if err := p.TrySetMTU(1400); !errors.Is(err, linkep.ErrMTULocked) {
		t.Errorf("TrySetMTU while joined = %v, want ErrMTULocked", err)
	}
	p.SetMTU(1400) // refused with a warning
	if p.MTU() != 1500 || hostMTU() != 1500 {
		t.Errorf("after a refused SetMTU: MTU %d, host %d, want 1500", p.MTU(), hostMTU())
	}

	// Behind our back: reported and reverted.
	setHostMTU(1400)
	if got := ev.next(t, isKind(linkep.MTUChanged), "MTU"); got.MTU != 1400 {
		t.Errorf("MTUChanged.MTU = %d, want the 1400 seen", got.MTU)
	}
	htEventually(t, "MTU reverted to 1500", func() bool { return hostMTU() == 1500 })
	if p.MTU() != 1500 {
		t.Errorf("MTU = %d after revert, want 1500", p.MTU())
	}

	// Through the lagg: applied, not reported.
	if err := p.SetPortMTU(1400); err != nil {
		t.Fatal(err)
	}
	if p.MTU() != 1400 || hostMTU() != 1400 {
		t.Errorf("after SetPortMTU(1400): MTU %d, host %d", p.MTU(), hostMTU())
	}
	setHostMTU(1300)
	ev.next(t, isKind(linkep.MTUChanged), "MTU")
	htEventually(t, "MTU reverted to 1400", func() bool { return hostMTU() == 1400 })
	if err := p.SetPortMTU(p.OriginalMTU()); err != nil {
		t.Fatal(err)
	}
	if hostMTU() != 1500 {
		t.Errorf("host MTU %d after SetPortMTU(OriginalMTU()), want 1500", hostMTU())
	}
	select {
	case got := <-ev:
		if got.Kind == linkep.MTUChanged {
			t.Errorf("SetPortMTU's own change reported: %+v", got)
		}
	case <-time.After(100 * time.Millisecond):
	}

	// Not joined: followed and reported, not reverted.
	p.Leave()
	setHostMTU(1450)
	if got := ev.next(t, isKind(linkep.MTUChanged), "MTU"); got.MTU != 1450 {
		t.Errorf("MTUChanged.MTU = %d, want 1450", got.MTU)
	}
	htEventually(t, "MTU followed to 1450", func() bool { return p.MTU() == 1450 })
	if hostMTU() != 1450 {
		t.Errorf("host MTU %d, want 1450 left alone after Leave", hostMTU())
	}
	if err := p.TrySetMTU(1380); err != nil {
		t.Fatalf("TrySetMTU after Leave: %v", err)
	}
	// Close gives back the original MTU when ours is still in place.
	p.Close()
	if hostMTU() != 1500 {
		t.Errorf("host MTU %d after Close, want the original 1500", hostMTU())
	}
}

func TestAFPacketGone(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	ev := htWatch(p)
	p.SetLinkAddress(laggMAC)
	s, stop := htStack(t, p, afStackIP)
	if err := htPing(t, e.peer, afStackIP, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	_ = s

	if err := e.peer.nl.LinkDel(e.peer.link(t, e.kname)); err != nil {
		t.Fatal(err)
	}
	ev.next(t, isKind(linkep.Gone), "Gone")
	if p.LinkUp() {
		t.Error("LinkUp true on a deleted interface")
	}
	if err := p.SetPortMTU(1400); err == nil {
		t.Error("SetPortMTU on a deleted interface succeeded")
	}
	stop()
}

func TestOpenKinds(t *testing.T) {
	if _, err := linkep.Open("wire", "w0", linkep.OpenOptions{}); err == nil {
		t.Error(`Open("wire") succeeded, want an error`)
	}
	if _, err := linkep.Open("bogus", "x0", linkep.OpenOptions{}); err == nil {
		t.Error(`Open("bogus") succeeded, want an error`)
	}
	if _, err := linkep.Open("afpacket", "", linkep.OpenOptions{}); err == nil {
		t.Error(`Open("afpacket", "") succeeded, want an error`)
	}
}

func TestOpenAFPacketMissing(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p, err := linkep.Open("afpacket", "ulgtnone0", linkep.OpenOptions{Netns: e.port.name})
	if err == nil {
		p.Close()
		t.Fatal("opened a missing interface")
	}
	p, err = linkep.Open("afpacket", e.pname, linkep.OpenOptions{Netns: e.port.name})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*host.AFPacket); !ok {
		t.Errorf("Open(afpacket) = %T", p)
	}
	p.Close()
}
