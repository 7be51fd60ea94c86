package host_test

import (
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/host"
)

var (
	tapKernelIP = [4]byte{10, 202, 0, 1}
	tapStackIP  = [4]byte{10, 202, 0, 2}
)

func newTAPNet(t *testing.T) (*htNet, string) {
	htRequireRoot(t)
	id := htID(t)
	return htNewNet(t, "ulgt-"+id+"-t"), "ulgt" + id + "t"
}

func openTAP(t *testing.T, n *htNet, name string) *host.TAP {
	t.Helper()
	tp, err := host.OpenTAP(name, host.TAPOptions{Netns: n.name})
	if err != nil {
		t.Fatalf("OpenTAP: %v", err)
	}
	t.Cleanup(tp.Close)
	return tp
}

func TestTAPTraffic(t *testing.T) {
	htLeakCheck(t)
	n, name := newTAPNet(t)
	tp := openTAP(t, n, name)

	l := n.link(t, name)
	if _, ok := l.(*netlink.Tuntap); !ok {
		t.Fatalf("%s is a %s, want tuntap", name, l.Type())
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Error("TAP not brought admin up")
	}
	if tp.LinkAddress() == tcpip.LinkAddress(l.Attrs().HardwareAddr) {
		t.Error("port uses the host side's MAC")
	}
	if got := tp.SpeedMbps(); got == 0 {
		t.Error("SpeedMbps = 0, want what ethtool reports for a TAP")
	}
	htEventually(t, "link up", tp.LinkUp)

	n.addAddr(t, name, "10.202.0.1/24")
	s, stop := htStack(t, tp, tapStackIP)
	htEchoServer(t, n, "10.202.0.1:7")
	if err := htPing(t, n, tapStackIP, 5*time.Second); err != nil {
		t.Fatalf("kernel -> gVisor ping: %v", err)
	}
	htTCPEcho(t, s, tapKernelIP, 7, 1<<20)

	// A unicast frame for another MAC is counted and dropped, and receive
	// goes on.
	htSendRaw(t, n, name, htForeignFrame(l.Attrs().HardwareAddr, tapStackIP))
	htEventually(t, "foreign frame counted", func() bool { return tp.Foreign.Load() == 1 })
	if err := htPing(t, n, tapStackIP, 5*time.Second); err != nil {
		t.Fatalf("ping after a foreign frame: %v", err)
	}

	stop()
	// ulagg created this TAP, so it goes with the port.
	if _, err := n.nl.LinkByName(name); !errors.As(err, new(netlink.LinkNotFoundError)) {
		t.Errorf("created TAP still there after Close (err %v)", err)
	}
}

// TestTAPOffloads checks that a TAP opened with GSO has a virtio-net header
// and offloads, and that frames larger than the MTU then cross it both ways
// (the kernel counts a GSO super-frame as one packet) with the bytes intact;
// and that DisableGSO keeps the plain TAP.
func TestTAPOffloads(t *testing.T) {
	for _, tc := range []struct {
		name string
		gso  bool
	}{{"gso", true}, {"nogso", false}} {
		t.Run(tc.name, func(t *testing.T) {
			htLeakCheck(t)
			n, name := newTAPNet(t)
			tp, err := host.OpenTAP(name, host.TAPOptions{Netns: n.name, DisableGSO: !tc.gso})
			if err != nil {
				t.Fatalf("OpenTAP: %v", err)
			}
			t.Cleanup(tp.Close)
			want, wantMax := stack.GSONotSupported, uint32(0)
			if tc.gso {
				want, wantMax = stack.HostGSOSupported, 1<<16
			}
			if got := tp.SupportedGSO(); got != want {
				t.Errorf("SupportedGSO = %v, want %v", got, want)
			}
			if got := tp.GSOMaxSize(); got != wantMax {
				t.Errorf("GSOMaxSize = %d, want %d", got, wantMax)
			}
			out, err := exec.Command("ip", "netns", "exec", n.name, "cat", "/sys/class/net/"+name+"/tun_flags").Output()
			if err != nil {
				t.Fatalf("tun_flags: %v", err)
			}
			flags, err := strconv.ParseUint(strings.TrimSpace(string(out)), 0, 32)
			if err != nil {
				t.Fatalf("tun_flags %q: %v", out, err)
			}
			if got := flags&unix.IFF_VNET_HDR != 0; got != tc.gso {
				t.Errorf("tun_flags %#x: IFF_VNET_HDR %v, want %v", flags, got, tc.gso)
			}

			n.addAddr(t, name, "10.202.0.1/24")
			s, _ := htStack(t, tp, tapStackIP)
			htEchoServer(t, n, "10.202.0.1:7")
			before := n.link(t, name).Attrs().Statistics
			htTCPEcho(t, s, tapKernelIP, 7, 4<<20)
			after := n.link(t, name).Attrs().Statistics
			// The kernel's RX is what the port wrote, its TX what the
			// port read.
			for _, d := range []struct {
				dir            string
				bytes, packets uint64
			}{
				{"gVisor→kernel", after.RxBytes - before.RxBytes, after.RxPackets - before.RxPackets},
				{"kernel→gVisor", after.TxBytes - before.TxBytes, after.TxPackets - before.TxPackets},
			} {
				if d.packets == 0 {
					t.Fatalf("%s: no packets", d.dir)
				}
				avg := d.bytes / d.packets
				if big := avg > 1514; big != tc.gso {
					t.Errorf("%s: %d bytes in %d frames (%d on average): super-frames %v, want %v", d.dir, d.bytes, d.packets, avg, big, tc.gso)
				}
			}
			if tp.RxErrors.Load() != 0 {
				t.Errorf("RxErrors = %d, want 0", tp.RxErrors.Load())
			}
		})
	}
}

func TestTAPPersistent(t *testing.T) {
	htLeakCheck(t)
	n, name := newTAPNet(t)
	htRun(t, "ip", "-n", n.name, "tuntap", "add", "dev", name, "mode", "tap")
	tp := openTAP(t, n, name)
	ev := htWatch(tp)
	htEventually(t, "link up", tp.LinkUp)

	if _, err := linkep.Open("tap", name, linkep.OpenOptions{Netns: n.name}); err == nil {
		t.Error("a second open of an attached TAP succeeded")
	}

	// Admin state from the kernel side.
	if err := n.nl.LinkSetDown(n.link(t, name)); err != nil {
		t.Fatal(err)
	}
	ev.next(t, isLink(false), "link down")
	if err := n.nl.LinkSetUp(n.link(t, name)); err != nil {
		t.Fatal(err)
	}
	ev.next(t, isLink(true), "link up")

	// MTU behind the lagg's back is reverted.
	tp.Join("lagg0")
	if err := n.nl.LinkSetMTU(n.link(t, name), 1400); err != nil {
		t.Fatal(err)
	}
	if got := ev.next(t, isKind(linkep.MTUChanged), "MTU"); got.MTU != 1400 {
		t.Errorf("MTUChanged.MTU = %d, want 1400", got.MTU)
	}
	htEventually(t, "MTU reverted", func() bool { return n.link(t, name).Attrs().MTU == 1500 })
	tp.Leave()

	tp.Close()
	l := n.link(t, name) // a persistent TAP stays
	if l.Attrs().Flags&net.FlagUp != 0 {
		t.Error("Close did not put the TAP back admin down")
	}
	if tt := l.(*netlink.Tuntap); tt.NonPersist {
		t.Error("the TAP lost its persist flag")
	}
	// And it can be attached again.
	openTAP(t, n, name).Close()
}

func TestTAPGone(t *testing.T) {
	htLeakCheck(t)
	n, name := newTAPNet(t)
	htRun(t, "ip", "-n", n.name, "tuntap", "add", "dev", name, "mode", "tap")
	tp := openTAP(t, n, name)
	ev := htWatch(tp)
	n.addAddr(t, name, "10.202.0.1/24")
	_, stop := htStack(t, tp, tapStackIP)
	if err := htPing(t, n, tapStackIP, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.nl.LinkDel(n.link(t, name)); err != nil {
		t.Fatal(err)
	}
	ev.next(t, isKind(linkep.Gone), "Gone")
	if tp.LinkUp() {
		t.Error("LinkUp true on a deleted TAP")
	}
	stop()
}

func TestTAPNotATap(t *testing.T) {
	htLeakCheck(t)
	n, name := newTAPNet(t)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "x"}
	if err := n.nl.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if tp, err := host.OpenTAP(name, host.TAPOptions{Netns: n.name}); err == nil {
		tp.Close()
		t.Fatal("OpenTAP on a dummy interface succeeded")
	}
}

// htTestFrameList is one broadcast frame of an unused EtherType from src.
func htTestFrameList(src tcpip.LinkAddress, add func(*stack.PacketBuffer)) (stack.PacketBufferList, func()) {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: 14,
		Payload:            buffer.MakeWithData(make([]byte, 100)),
	})
	pkt.NetworkProtocolNumber = 0x88b5
	pkt.EgressRoute.LocalLinkAddress = src
	pkt.EgressRoute.RemoteLinkAddress = header.EthernetBroadcastAddress
	add(pkt)
	var list stack.PacketBufferList
	list.PushBack(pkt)
	return list, pkt.DecRef
}

func TestTAPWriteAllocs(t *testing.T) {
	htLeakCheck(t)
	n, name := newTAPNet(t)
	tp := openTAP(t, n, name)
	list, release := htTestFrameList(tp.LinkAddress(), tp.AddHeader)
	defer release()
	if _, err := tp.WritePackets(list); err != nil {
		t.Fatalf("WritePackets: %v", err)
	}
	if allocs := testing.AllocsPerRun(200, func() { tp.WritePackets(list) }); allocs != 0 {
		t.Errorf("WritePackets allocates %.1f times per call, want 0", allocs)
	}
}

// tapCapture is a NetworkDispatcher that keeps what it was handed last.
type tapCapture struct {
	n        int
	proto    tcpip.NetworkProtocolNumber
	size     int
	csum     bool
	pktType  tcpip.PacketType
	first    byte // the first payload byte after the Ethernet header
	lastByte byte
}

func (c *tapCapture) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) {
	c.n++
	c.proto, c.csum, c.pktType = proto, pkt.RXChecksumValidated, pkt.PktType
	c.size = pkt.Data().Size()
	b := pkt.Data().AsRange().ToView()
	c.first, c.lastByte = b.AsSlice()[0], b.AsSlice()[b.Size()-1]
	b.Release()
}

func (*tapCapture) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}

// TestTAPDeliver drives the receive path with frames as readv leaves them:
// short, foreign, for the port's first MAC, with and without a vnet header
// saying the checksum is done, and a 64 KB super-frame spanning every view.
func TestTAPDeliver(t *testing.T) {
	mac := tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01")
	frame := func(dst tcpip.LinkAddress, size int) []byte {
		b := make([]byte, max(size, 14))
		copy(b, dst)
		b[12], b[13] = 0x08, 0x00
		b = b[:size]
		for i := 14; i < size; i++ {
			b[i] = byte(i)
		}
		return b
	}
	csumDone := [10]byte{1} // VIRTIO_NET_HDR_F_NEEDS_CSUM
	for _, vnet := range []bool{true, false} {
		tp := host.NewTAPForDeliver(mac, vnet)
		defer tp.ReleaseRx()
		var c tapCapture
		tp.DeliverFrame(&c, [10]byte{}, frame(mac, 10))
		if c.n != 0 || tp.RxErrors.Load() != 1 {
			t.Errorf("vnet %v: short frame: delivered %d, RxErrors %d, want 0, 1", vnet, c.n, tp.RxErrors.Load())
		}
		tp.DeliverFrame(&c, [10]byte{}, frame("\x02\x00\x00\x00\x00\x99", 100))
		if c.n != 0 || tp.Foreign.Load() != 1 {
			t.Errorf("vnet %v: foreign frame: delivered %d, Foreign %d, want 0, 1", vnet, c.n, tp.Foreign.Load())
		}
		tp.SetLinkAddress("\x02\x00\x00\x00\x00\x02")
		tp.DeliverFrame(&c, csumDone, frame(mac, 100))
		if c.n != 1 || c.pktType != tcpip.PacketOtherHost || c.size != 86 {
			t.Errorf("vnet %v: frame for the first MAC: delivered %d, type %d, size %d, want 1, PacketOtherHost, 86", vnet, c.n, c.pktType, c.size)
		}
		if c.csum != vnet {
			t.Errorf("vnet %v: RXChecksumValidated %v, want %v", vnet, c.csum, vnet)
		}
		big := frame(tp.LinkAddress(), 14+65535)
		tp.DeliverFrame(&c, csumDone, big)
		if c.n != 2 || c.size != 65535 || c.proto != header.IPv4ProtocolNumber || c.first != 14 || c.lastByte != big[len(big)-1] || c.pktType == tcpip.PacketOtherHost {
			t.Errorf("vnet %v: super-frame: delivered %d, size %d, proto %#x, bytes %d..%d, type %d; want 2, 65535, IPv4, 14..%d, not other-host",
				vnet, c.n, c.size, c.proto, c.first, c.lastByte, c.pktType, big[len(big)-1])
		}
		if afRace {
			continue
		}
		small := frame(tp.LinkAddress(), 1514)
		var d tapDiscard
		if allocs := testing.AllocsPerRun(200, func() { tp.DeliverFrame(&d, csumDone, small) }); allocs != 0 {
			t.Errorf("vnet %v: receiving a frame allocates %.1f times, want 0", vnet, allocs)
		}
	}
}

type tapDiscard struct{}

func (tapDiscard) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {}
func (tapDiscard) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer)    {}
