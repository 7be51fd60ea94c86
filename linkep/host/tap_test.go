package host_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
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
