package host_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
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

func newAFEnv(t testing.TB) *afEnv {
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

func (e *afEnv) open(t testing.TB, opts host.AFPacketOptions) *host.AFPacket {
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

	// Admin down makes the kernel report ENETDOWN to the socket; the
	// receive goroutine must keep going and receive again once it is up.
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
	mu sync.Mutex
	// +checklocks:mu
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
// (the receive goroutine starts again); LACPDUs reach it.
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

// afFrame is one frame as a port delivered it.
type afFrame struct {
	proto tcpip.NetworkProtocolNumber
	link  []byte // the consumed Ethernet header
	data  []byte // what follows it
	csum  bool   // RXChecksumValidated
}

// afRecorder records every frame a port delivers.
type afRecorder struct {
	mu sync.Mutex
	// +checklocks:mu
	frames []afFrame
}

func (r *afRecorder) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	f := afFrame{
		proto: proto,
		link:  slices.Clone(pkt.LinkHeader().Slice()),
		data:  pkt.Data().AsRange().ToSlice(),
		csum:  pkt.RXChecksumValidated,
	}
	r.mu.Lock()
	r.frames = append(r.frames, f)
	r.mu.Unlock()
}

func (*afRecorder) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// has reports whether a frame matching match arrived.
func (r *afRecorder) has(match func(afFrame) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.frames, match)
}

// wait returns the first frame matching match, waiting up to 5s for it.
func (r *afRecorder) wait(t *testing.T, what string, match func(afFrame) bool) afFrame {
	t.Helper()
	var got afFrame
	htEventually(t, what, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, f := range r.frames {
			if match(f) {
				got = f
				return true
			}
		}
		return false
	})
	return got
}

// afRawSocket is a packet socket in n bound to ifname, for writing frames
// out of it with write(2); closed by the cleanup.
func afRawSocket(t *testing.T, n *htNet, ifname string) int {
	t.Helper()
	idx := n.link(t, ifname).Attrs().Index
	fd := -1
	htDo(t, n, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: idx}); err != nil {
		t.Fatal(err)
	}
	return fd
}

// afVLANFrame is an ARP request from src to dst behind an 802.1Q or 802.1ad
// tag (tpid, tci).
func afVLANFrame(dst, src []byte, tpid, tci uint16) []byte {
	f := htFrame(dst, src, tpid)
	binary.BigEndian.PutUint16(f[14:], tci)
	binary.BigEndian.PutUint16(f[16:], 0x0806)
	copy(f[18:], afARP(src))
	return f
}

// afARP is an ARP request from 10.201.0.9 for 10.201.0.2.
func afARP(src []byte) []byte {
	a := []byte{0, 1, 8, 0, 6, 4, 0, 1}
	a = append(a, src...)
	a = append(a, 10, 201, 0, 9, 0, 0, 0, 0, 0, 0, 10, 201, 0, 2)
	return a
}

// TestAFPacketVLAN: veth strips the tag of a tagged frame into the packet's
// metadata (skb_vlan_untag on receive); the port puts it back, so the
// dispatcher sees the TPID as the EtherType and the TCI and inner EtherType
// first in the payload, as on the wire. Untagged frames are unchanged.
func TestAFPacketVLAN(t *testing.T) {
	for _, gso := range []bool{true, false} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			htLeakCheck(t)
			e := newAFEnv(t)
			p := e.open(t, host.AFPacketOptions{DisableGSO: !gso})
			var d afRecorder
			p.Attach(&d)
			defer p.Attach(nil)
			mac := []byte(p.LinkAddress())
			src := []byte(e.peer.link(t, e.kname).Attrs().HardwareAddr)
			fd := afRawSocket(t, e.peer, e.kname)

			for _, tc := range []struct {
				tpid, tci uint16
			}{
				{0x8100, 3<<13 | 100}, // PCP 3, VID 100
				{0x88a8, 0x0123},      // 802.1ad, VID 291
				{0x8100, 0},           // priority tag: VID 0
			} {
				if _, err := unix.Write(fd, afVLANFrame(mac, src, tc.tpid, tc.tci)); err != nil {
					t.Fatal(err)
				}
				f := d.wait(t, fmt.Sprintf("frame tagged %#04x/%#04x", tc.tpid, tc.tci), func(f afFrame) bool {
					return f.proto == tcpip.NetworkProtocolNumber(tc.tpid) && len(f.data) >= 4 &&
						binary.BigEndian.Uint16(f.data) == tc.tci
				})
				if !slices.Equal(f.link[:6], mac) || !slices.Equal(f.link[6:12], src) {
					t.Errorf("%#04x: MACs %x, want %x %x", tc.tpid, f.link[:12], mac, src)
				}
				if got := binary.BigEndian.Uint16(f.link[12:]); got != tc.tpid {
					t.Errorf("%#04x: EtherType in the link header %#04x", tc.tpid, got)
				}
				if got := binary.BigEndian.Uint16(f.data[2:]); got != 0x0806 {
					t.Errorf("%#04x: inner EtherType %#04x, want 0x0806", tc.tpid, got)
				}
				if !bytes.HasPrefix(f.data[4:], afARP(src)) {
					t.Errorf("%#04x: payload %x, want the ARP request", tc.tpid, f.data[4:])
				}
			}

			// Untagged: the ARP request as sent.
			if _, err := unix.Write(fd, append(htFrame(mac, src, 0x0806)[:14], afARP(src)...)); err != nil {
				t.Fatal(err)
			}
			f := d.wait(t, "untagged ARP", func(f afFrame) bool { return f.proto == 0x0806 })
			if !bytes.HasPrefix(f.data, afARP(src)) || binary.BigEndian.Uint16(f.link[12:]) != 0x0806 {
				t.Errorf("untagged: link %x data %x", f.link, f.data)
			}
		})
	}
}

// TestAFPacketChecksum: a UDP datagram the peer's kernel sends over veth
// carries a partial checksum (CHECKSUM_PARTIAL) and must arrive trusted; a
// frame written through a packet socket carries no checksum status, so one
// with a wrong UDP checksum must arrive untrusted.
func TestAFPacketChecksum(t *testing.T) {
	for _, gso := range []bool{true, false} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			htLeakCheck(t)
			e := newAFEnv(t)
			p := e.open(t, host.AFPacketOptions{DisableGSO: !gso})
			var d afRecorder
			p.Attach(&d)
			defer p.Attach(nil)
			mac := []byte(p.LinkAddress())
			peer := e.peer.link(t, e.kname)
			if err := e.peer.nl.NeighAdd(&netlink.Neigh{
				LinkIndex: peer.Attrs().Index, State: netlink.NUD_PERMANENT,
				IP: net.IP(afStackIP[:]), HardwareAddr: net.HardwareAddr(mac),
			}); err != nil {
				t.Fatal(err)
			}
			isUDP := func(port uint16) func(afFrame) bool {
				return func(f afFrame) bool {
					return f.proto == 0x0800 && len(f.data) >= 28 && f.data[9] == 17 &&
						binary.BigEndian.Uint16(f.data[22:]) == port
				}
			}

			htDo(t, e.peer, func() error {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				defer unix.Close(fd)
				return unix.Sendto(fd, []byte("checksum offload"), 0, &unix.SockaddrInet4{Addr: afStackIP, Port: 9999})
			})
			if f := d.wait(t, "the kernel's UDP datagram", isUDP(9999)); !f.csum {
				t.Error("kernel UDP over veth (partial checksum): RXChecksumValidated false, want true")
			}

			// Full but wrong UDP checksum, through a packet socket.
			f := htFrame(mac, peer.Attrs().HardwareAddr, 0x0800)[:14]
			payload := []byte("wrong checksum")
			ip := make([]byte, 28, 28+len(payload))
			ip[0], ip[8], ip[9] = 0x45, 64, 17
			binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
			copy(ip[12:], afKernelIP[:])
			copy(ip[16:], afStackIP[:])
			binary.BigEndian.PutUint16(ip[10:], htChecksum(ip[:20]))
			udp := ip[20:]
			binary.BigEndian.PutUint16(udp[0:], 5555)
			binary.BigEndian.PutUint16(udp[2:], 9998)
			binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
			binary.BigEndian.PutUint16(udp[6:], 0xbad1) // not the sum, and not 0 (none)
			htSendRaw(t, e.peer, e.kname, append(append(f, ip...), payload...))
			if f := d.wait(t, "the hand-made UDP frame", isUDP(9998)); f.csum {
				t.Error("raw frame with a wrong UDP checksum: RXChecksumValidated true, want false")
			}
		})
	}
}

// afBlocker blocks in its first delivery until released, then counts.
type afBlocker struct {
	blocked chan struct{} // closed when the first frame arrived
	release chan struct{}
	n       atomic.Uint64
}

func (b *afBlocker) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	if b.n.Add(1) == 1 {
		close(b.blocked)
		<-b.release
	}
}

func (*afBlocker) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestAFPacketKernelDrops: while the dispatcher blocks, the socket buffer
// fills and the kernel drops; KernelDrops reports it, also after Close.
func TestAFPacketKernelDrops(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	if got := p.KernelDrops(); got != 0 {
		t.Errorf("KernelDrops = %d on a fresh port", got)
	}
	b := &afBlocker{blocked: make(chan struct{}), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(b.release) })
	t.Cleanup(release) // before Close, which would wait for the blocked loop
	p.Attach(b)
	fd := afRawSocket(t, e.peer, e.kname)
	frame := htFrame([]byte(header.EthernetBroadcastAddress), e.peer.link(t, e.kname).Attrs().HardwareAddr, 0x88b5)
	if _, err := unix.Write(fd, frame); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.blocked:
	case <-time.After(5 * time.Second):
		t.Fatal("the first frame never arrived")
	}

	// About 10k small frames fill the 8 MiB the kernel grants the 4 MiB
	// SO_RCVBUF; stop as soon as drops show.
	sent, deadline := 0, time.Now().Add(10*time.Second)
	for sent < 200000 && time.Now().Before(deadline) {
		for range 2000 {
			if _, err := unix.Write(fd, frame); err != nil {
				t.Fatalf("flood: %v", err)
			}
		}
		sent += 2000
		if p.KernelDrops() > 0 {
			break
		}
	}
	drops := p.KernelDrops()
	t.Logf("sent %d frames while blocked, kernel drops %d", sent, drops)
	release()
	if drops == 0 {
		t.Fatal("KernelDrops = 0 after overflowing the socket buffer")
	}
	// The loop drains what the kernel queued and keeps the count.
	htEventually(t, "the queue drained", func() bool { return b.n.Load()+p.KernelDrops() >= uint64(sent) })
	if got := b.n.Load() + p.KernelDrops(); got > uint64(sent)+1 {
		t.Errorf("delivered %d + dropped %d > sent %d", b.n.Load(), p.KernelDrops(), sent+1)
	}
	if got := p.KernelDrops(); got < drops {
		t.Errorf("KernelDrops went back from %d to %d", drops, got)
	}
	p.Attach(nil)
	last := p.KernelDrops()
	p.Close()
	if got := p.KernelDrops(); got != last {
		t.Errorf("KernelDrops after Close = %d, want the last total %d", got, last)
	}
}

// TestAFPacketAdminDownUp: with the interface admin down the receive
// goroutine waits without spinning and receives again once it is up.
func TestAFPacketAdminDownUp(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	var d afRecorder
	p.Attach(&d)
	mac := []byte(p.LinkAddress())
	src := []byte(e.peer.link(t, e.kname).Attrs().HardwareAddr)
	ev := htWatch(p)
	htEventually(t, "link up", p.LinkUp)

	for round := range 3 {
		et := uint16(0x88b5 + round)
		link := e.port.link(t, e.pname)
		if err := e.port.nl.LinkSetDown(link); err != nil {
			t.Fatal(err)
		}
		ev.next(t, isLink(false), "link down")
		cpu0 := afCPUTime(t)
		time.Sleep(300 * time.Millisecond)
		if used := afCPUTime(t) - cpu0; used > 150*time.Millisecond {
			t.Errorf("round %d: %v CPU in 300 ms while the interface was down: spinning?", round, used)
		}
		if !p.IsAttached() {
			t.Fatalf("round %d: detached by admin down", round)
		}
		if err := e.port.nl.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		ev.next(t, isLink(true), "link up")
		// The frame may race the carrier coming back: send until it arrives.
		arrived := func() bool { return d.has(func(f afFrame) bool { return f.proto == tcpip.NetworkProtocolNumber(et) }) }
		for deadline := time.Now().Add(5 * time.Second); !arrived(); {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no frame after admin up", round)
			}
			htSendRaw(t, e.peer, e.kname, htFrame(mac, src, et))
			for until := time.Now().Add(100 * time.Millisecond); !arrived() && time.Now().Before(until); {
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	p.Attach(nil)
	p.Wait() // returns at once once detached
}

func afCPUTime(t *testing.T) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// afCounter counts deliveries without allocating.
type afCounter struct{ n atomic.Uint64 }

func (c *afCounter) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	c.n.Add(1)
}

func (*afCounter) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestAFPacketRxAllocs: the receive loop allocates nothing per frame beyond
// the pooled packet buffer and views (no new slices per batch or frame).
func TestAFPacketRxAllocs(t *testing.T) {
	for _, gso := range []bool{true, false} {
		t.Run(fmt.Sprintf("gso=%v", gso), func(t *testing.T) {
			htLeakCheck(t)
			e := newAFEnv(t)
			p := e.open(t, host.AFPacketOptions{DisableGSO: !gso})
			var c afCounter
			p.Attach(&c)
			defer p.Attach(nil)
			fd := afRawSocket(t, e.peer, e.kname)
			src := e.peer.link(t, e.kname).Attrs().HardwareAddr
			small := htFrame([]byte(header.EthernetBroadcastAddress), src, 0x88b5)
			big := append(htFrame([]byte(p.LinkAddress()), src, 0x88b6), make([]byte, 1400)...)
			tagged := afVLANFrame([]byte(p.LinkAddress()), src, 0x8100, 100)
			frames := [][]byte{small, big, tagged}
			// send sends n frames, in chunks the socket buffer holds, and
			// waits for each chunk to be read (delivered or, should the
			// loop fall behind anyway, dropped by the kernel).
			send := func(n int) {
				t.Helper()
				for i := 0; i < n; {
					want := c.n.Load() + p.KernelDrops()
					for ; want < c.n.Load()+p.KernelDrops()+500 && i < n; i++ {
						if _, err := unix.Write(fd, frames[i%len(frames)]); err != nil {
							t.Fatal(err)
						}
						want++
					}
					for deadline := time.Now().Add(5 * time.Second); c.n.Load()+p.KernelDrops() < want; {
						if time.Now().After(deadline) {
							t.Fatalf("frames neither delivered nor dropped: %d of %d", want-c.n.Load()-p.KernelDrops(), n)
						}
						runtime.Gosched()
					}
				}
			}
			send(3000) // warm the pools
			const n = 30000
			var m0, m1 runtime.MemStats
			runtime.ReadMemStats(&m0)
			send(n)
			runtime.ReadMemStats(&m1)
			per := float64(m1.Mallocs-m0.Mallocs) / n
			t.Logf("%d allocations for %d frames", m1.Mallocs-m0.Mallocs, n)
			if afRace {
				t.Log("race detector: sync.Pool drops items at random, allocations not checked")
			} else if per > 0.05 {
				t.Errorf("%.3f allocations per received frame, want none", per)
			}
		})
	}
}

// TestAFPacketCycles: opening, attaching, receiving, detaching, attaching
// again and closing leaves no goroutine, eventfd or other fd behind.
func TestAFPacketCycles(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	src := []byte(e.peer.link(t, e.kname).Attrs().HardwareAddr)
	eventfds := func() int {
		n := 0
		for _, f := range htFDs() {
			if strings.HasSuffix(f, "anon_inode:[eventfd]") {
				n++
			}
		}
		return n
	}
	g0, f0, efd0 := runtime.NumGoroutine(), len(htFDs()), eventfds()
	for i := range 5 {
		opts := host.AFPacketOptions{Netns: e.port.name, DisableGSO: i%2 == 1}
		p, err := host.OpenAFPacket(e.pname, opts)
		if err != nil {
			t.Fatal(err)
		}
		p.SetLinkAddress(laggMAC)
		for j := range 3 {
			var d htDispatcher
			p.Attach(&d)
			et := tcpip.NetworkProtocolNumber(0x88b5 + j)
			htSendRaw(t, e.peer, e.kname, htFrame([]byte(laggMAC), src, uint16(et)))
			htEventually(t, fmt.Sprintf("cycle %d.%d: frame", i, j), func() bool { return d.has(et) })
			if j < 2 || i%2 == 0 {
				p.Attach(nil) // else Close detaches
			}
		}
		p.Close()
		p.Attach(&htDispatcher{}) // ignored after Close
		if p.IsAttached() {
			t.Fatal("attached after Close")
		}
	}
	htEventually(t, "goroutines and fds back", func() bool {
		return runtime.NumGoroutine() <= g0 && len(htFDs()) <= f0 && eventfds() <= efd0
	})
}

// afSlow is a dispatcher slower than the flood its port gets, so the
// socket never runs dry.
type afSlow struct{ n atomic.Uint64 }

func (s *afSlow) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	for start := time.Now(); time.Since(start) < 20*time.Microsecond; {
	}
	s.n.Add(1)
}

func (*afSlow) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestAFPacketDetachUnderLoad: Attach(nil) returns while frames keep
// coming and the socket never runs dry.
func TestAFPacketDetachUnderLoad(t *testing.T) {
	htLeakCheck(t)
	e := newAFEnv(t)
	p := e.open(t, host.AFPacketOptions{})
	fd := afRawSocket(t, e.peer, e.kname)
	frame := htFrame([]byte(header.EthernetBroadcastAddress), e.peer.link(t, e.kname).Attrs().HardwareAddr, 0x88b5)
	var stop atomic.Bool
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		for !stop.Load() {
			unix.Write(fd, frame)
		}
	}()
	defer func() {
		stop.Store(true)
		<-flooded
	}()
	for round := range 5 {
		var c afSlow
		p.Attach(&c)
		htEventually(t, "the socket buffer full", func() bool { return c.n.Load() > 1000 && p.KernelDrops() > 0 })
		detached := make(chan struct{})
		go func() {
			p.Attach(nil)
			close(detached)
		}()
		select {
		case <-detached:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: Attach(nil) did not return under load (%d frames delivered)", round, c.n.Load())
		}
		n := c.n.Load()
		time.Sleep(20 * time.Millisecond)
		if got := c.n.Load(); got != n {
			t.Fatalf("round %d: %d frames delivered after Attach(nil) returned", round, got-n)
		}
	}
}
