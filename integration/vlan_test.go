package integration

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// vlanTag inserts a tag (tpid, tci) after the MAC addresses of frame.
func vlanTag(frame []byte, tpid, tci uint16) []byte {
	out := make([]byte, 0, len(frame)+4)
	out = append(out, frame[:12]...)
	out = binary.BigEndian.AppendUint16(out, tpid)
	out = binary.BigEndian.AppendUint16(out, tci)
	return append(out, frame[12:]...)
}

// arpRequest is a broadcast ARP request from (mac, ip) for laggIP.
func arpRequest(mac tcpip.LinkAddress, ip [4]byte) []byte {
	b := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	a := header.ARP(b[header.EthernetMinimumSize:])
	a.SetIPv4OverEthernet()
	a.SetOp(header.ARPRequest)
	copy(a.HardwareAddressSender(), mac)
	copy(a.ProtocolAddressSender(), ip[:])
	target := laggAddr.As4()
	copy(a.ProtocolAddressTarget(), target[:])
	return b
}

// arpReplySniffer counts ARP replies from laggIP to a MAC, read with a
// packet socket on one interface of a namespace (frames in both
// directions).
type arpReplySniffer struct {
	mu sync.Mutex
	// +checklocks:mu
	to map[string]int
}

func newARPReplySniffer(t testing.TB, ns, dev string) *arpReplySniffer {
	t.Helper()
	idx := mustLink(t, ns, dev).Index
	fd := -1
	err := lab.Do(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns, err)
	}
	// ETH_P_ALL: a bridge port's ingress frames reach only those sockets
	// (the bridge takes them before protocol handlers run).
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	s := &arpReplySniffer{to: map[string]int{}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		lagg := laggAddr.As4()
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < header.EthernetMinimumSize+header.ARPSize || header.Ethernet(buf).Type() != header.ARPProtocolNumber {
				continue
			}
			a := header.ARP(buf[header.EthernetMinimumSize:n])
			if a.Op() != header.ARPReply || string(a.ProtocolAddressSender()) != string(lagg[:]) {
				continue
			}
			s.mu.Lock()
			s.to[string(a.HardwareAddressTarget())]++
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		unix.Close(fd)
	})
	return s
}

func (s *arpReplySniffer) count(mac tcpip.LinkAddress) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to[string(mac)]
}

// fakeMAC is a MAC no interface has, one per request, so each ARP request
// is told apart by the reply's target.
func fakeMAC(i byte) tcpip.LinkAddress { return tcpip.LinkAddress([]byte{0x02, 0x5a, 0, 0, 0x02, i}) }

// TestVLANTaggedFramesAFPacket: through an AF_PACKET port (the kernel
// strips the tag on the veth; the port puts it back), an ARP request tagged
// for VLAN 200 (802.1Q, 802.1ad, or 0x9100, which the kernel leaves in the
// frame) gets no reply and is counted as a vlan drop, while the same
// request untagged is answered; a tagged ping is not answered, an untagged
// one is.
func TestVLANTaggedFramesAFPacket(t *testing.T) {
	tp := newTopo(t, 1)
	ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
	pingOK(t, tp.host, 3)
	port := tp.ports[0]
	inj := newInjector(t, tp.host, tp.peers[0])
	arps := newARPReplySniffer(t, tp.host, tp.peers[0])
	pings := newEchoReplySniffer(t, tp.host)
	laggMAC := ap.l.Status().MAC
	brMAC, err := net.ParseMAC(mustLink(t, tp.host, tp.bridge).MAC)
	if err != nil {
		t.Fatal(err)
	}
	host := hostAddr.As4()
	// ARP requests come from an address of no one's, so the lagg's
	// neighbour entry for the host stays the bridge's MAC.
	asker := [4]byte{10, 231, 0, 77}
	vlanDrops := func() uint64 { return portCounters(t, ap.l, port).Drops["vlan"] }

	before := vlanDrops()
	tagged := []struct {
		name string
		tpid uint16
	}{{"802.1Q", 0x8100}, {"802.1ad", 0x88a8}, {"0x9100", 0x9100}}
	for i, tc := range tagged {
		inj.send(t, vlanTag(arpRequest(fakeMAC(byte(i)), asker), tc.tpid, 200))
	}
	const pingID, frames = 0xa200, 5
	for seq := range frames {
		inj.send(t, vlanTag(icmpEchoFrame(laggMAC, tcpip.LinkAddress(brMAC), host, laggAddr.As4(), pingID, uint16(seq)), 0x8100, 200))
	}
	want := uint64(len(tagged) + frames)
	testkit.WaitFor(t, 3*time.Second, "the tagged frames counted as vlan drops", func() bool { return vlanDrops()-before >= want })
	// The untagged request is answered: if the tagged ones were, their
	// replies would have come first.
	untagged := fakeMAC(0x10)
	inj.send(t, arpRequest(untagged, asker))
	const okID = 0xa201
	for seq := range frames {
		inj.send(t, icmpEchoFrame(laggMAC, tcpip.LinkAddress(brMAC), host, laggAddr.As4(), okID, uint16(seq)))
	}
	if !testkit.Poll(3*time.Second, func() bool { return arps.count(untagged) == 1 && pings.count(okID) == frames }) {
		t.Fatalf("untagged: %d ARP replies (want 1), %d of %d pings answered; port %+v", arps.count(untagged), pings.count(okID), frames, portCounters(t, ap.l, port))
	}
	time.Sleep(200 * time.Millisecond)
	for i, tc := range tagged {
		if n := arps.count(fakeMAC(byte(i))); n != 0 {
			t.Errorf("%s-tagged ARP request (VLAN 200): %d replies, want none", tc.name, n)
		}
	}
	if n := pings.count(pingID); n != 0 {
		t.Errorf("tagged pings (VLAN 200): %d replies, want none", n)
	}
	got := vlanDrops() - before
	if got != want {
		t.Errorf("vlan drops on %s: got %d, want %d", port, got, want)
	}
	t.Logf("measure: afpacket port, %d tagged frames (ARP 802.1Q/802.1ad/0x9100 VID 200, %d pings 802.1Q VID 200): %d vlan drops, 0 answered; untagged ARP and %d pings answered",
		want, frames, got, frames)
}

// TestVLANTaggedFramesTAP: a tagged ARP request written into a TAP port by
// the kernel arrives with EtherType 0x8100 in the frame; it gets no reply
// and is counted as a vlan drop, while the untagged request is answered.
func TestVLANTaggedFramesTAP(t *testing.T) {
	lb := newLab(t)
	ns, err := lb.AddNS("t")
	if err != nil {
		t.Fatal(err)
	}
	tap := testPrefix + "t0"
	lc := laggConfig(config.ProtoFailover)
	lc.Ports = append(lc.Ports, config.Port{Name: tap, Kind: "tap", Priority: 1000})
	ap := startAppliance(t, lc, appOptions{netns: ns})
	inj := newInjector(t, ns, tap)
	arps := newARPReplySniffer(t, ns, tap)
	host := hostAddr.As4()
	vlanDrops := func() uint64 { return portCounters(t, ap.l, tap).Drops["vlan"] }
	before := vlanDrops()
	tagged := fakeMAC(0x20)
	inj.send(t, vlanTag(arpRequest(tagged, host), 0x8100, 200))
	testkit.WaitFor(t, 3*time.Second, "the tagged ARP request counted as a vlan drop", func() bool { return vlanDrops()-before == 1 })
	untagged := fakeMAC(0x21)
	testkit.WaitFor(t, 3*time.Second, "the untagged ARP request answered", func() bool {
		inj.send(t, arpRequest(untagged, host))
		return testkit.Poll(200*time.Millisecond, func() bool { return arps.count(untagged) > 0 })
	})
	if n := arps.count(tagged); n != 0 {
		t.Errorf("tagged ARP request through the TAP: %d replies, want none", n)
	}
	if got := vlanDrops() - before; got != 1 {
		t.Errorf("vlan drops on %s: got %d, want 1", tap, got)
	}
	t.Logf("measure: tap port, 802.1Q VID 200 ARP request: %d vlan drop, no reply; untagged answered", vlanDrops()-before)
}
