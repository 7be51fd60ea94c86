package integration

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// TestRxAll: with failover's rx-all off, ICMP echo requests injected into
// the standby port (from the kernel side of its veth, addressed to the
// lagg's MAC) are dropped and counted as inactive-port drops, and nothing
// answers them; the same frames on the active port are answered; and once
// rx-all is switched back on at runtime the standby port delivers too.
func TestRxAll(t *testing.T) {
	tp := newTopo(t, 2)
	lc := laggConfig(config.ProtoFailover, tp.ports...)
	lc.Failover.RxAll = false
	ap := startAppliance(t, lc, appOptions{netns: tp.lag})
	pingOK(t, tp.host, 3) // both sides resolve each other's MAC
	if st := ap.l.Status(); st.Failover == nil || st.Failover.RxAll {
		t.Fatalf("failover status %+v, want rx-all off", st.Failover)
	}
	laggMAC := ap.l.Status().MAC
	brMAC, err := net.ParseMAC(mustLink(t, tp.host, tp.bridge).MAC)
	if err != nil {
		t.Fatal(err)
	}
	sniff := newEchoReplySniffer(t, tp.host)

	const frames = 20
	for i, tc := range []struct {
		name        string
		port        int // index into tp.ports / tp.peers
		rxAll       bool
		wantAnswers bool
	}{
		{"standby_rxall_off", 1, false, false},
		{"active_rxall_off", 0, false, true},
		{"standby_rxall_on", 1, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if lc.Failover.RxAll != tc.rxAll {
				lc.Failover.RxAll = tc.rxAll
				if err := ap.a.ApplyLagg(lc); err != nil {
					t.Fatal(err)
				}
			}
			port := tp.ports[tc.port]
			if tx := ap.l.Status().TxPort; tx != tp.ports[0] {
				t.Fatalf("transmitting on %s, want %s", tx, tp.ports[0])
			}
			before := portCounters(t, ap.l, port)
			id := uint16(0xbe00 + i)
			inj := newInjector(t, tp.host, tp.peers[tc.port])
			for seq := range frames {
				inj.send(t, icmpEchoFrame(laggMAC, tcpip.LinkAddress(brMAC), hostAddr.As4(), laggAddr.As4(), id, uint16(seq)))
			}
			var answered int
			if tc.wantAnswers {
				_ = testkit.Poll(2*time.Second, func() bool { return sniff.count(id) >= frames })
				answered = sniff.count(id)
			} else {
				time.Sleep(500 * time.Millisecond)
				answered = sniff.count(id)
			}
			after := portCounters(t, ap.l, port)
			drops := after.Drop(lagg.DropInactivePort) - before.Drop(lagg.DropInactivePort)
			rx := after.RxFrames - before.RxFrames
			t.Logf("measure: rx-all %v, %d echo requests into %s: %d answered, port rx +%d, inactive-port drops +%d",
				tc.rxAll, frames, port, answered, rx, drops)
			if tc.wantAnswers {
				if answered < frames-1 {
					t.Errorf("%d of %d echo requests answered, want all", answered, frames)
				}
				if rx < frames {
					t.Errorf("port %s rx frames +%d, want ≥ %d", port, rx, frames)
				}
				return
			}
			if answered != 0 {
				t.Errorf("%d echo requests received on the standby port were answered, want none", answered)
			}
			if drops < frames {
				t.Errorf("port %s inactive-port drops +%d, want ≥ %d", port, drops, frames)
			}
			if rx != 0 {
				t.Errorf("port %s delivered %d frames to the stack, want 0", port, rx)
			}
		})
	}
}

// injector sends raw Ethernet frames out of one interface of a namespace
// with an AF_PACKET socket made there.
type injector struct {
	fd int
	sa *unix.SockaddrLinklayer
}

func newInjector(t testing.TB, ns, dev string) *injector {
	t.Helper()
	idx := mustLink(t, ns, dev).Index
	inj := &injector{fd: -1, sa: &unix.SockaddrLinklayer{Ifindex: idx, Protocol: htons(unix.ETH_P_IP)}}
	err := lab.Do(ns, func() (err error) {
		// Protocol 0: the socket only sends.
		inj.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		t.Fatalf("packet socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(inj.fd) })
	return inj
}

func (inj *injector) send(t testing.TB, frame []byte) {
	t.Helper()
	if err := unix.Sendto(inj.fd, frame, 0, inj.sa); err != nil {
		t.Fatalf("inject: %v", err)
	}
}

// icmpEchoFrame builds an Ethernet frame holding an ICMPv4 echo request.
func icmpEchoFrame(dstMAC, srcMAC tcpip.LinkAddress, src, dst [4]byte, id, seq uint16) []byte {
	const payload = 32
	b := make([]byte, header.EthernetMinimumSize+header.IPv4MinimumSize+header.ICMPv4MinimumSize+payload)
	header.Ethernet(b).Encode(&header.EthernetFields{SrcAddr: srcMAC, DstAddr: dstMAC, Type: header.IPv4ProtocolNumber})
	ip := header.IPv4(b[header.EthernetMinimumSize:])
	ip.Encode(&header.IPv4Fields{
		TotalLength: uint16(len(ip)),
		TTL:         64,
		Protocol:    uint8(header.ICMPv4ProtocolNumber),
		SrcAddr:     tcpip.AddrFrom4(src),
		DstAddr:     tcpip.AddrFrom4(dst),
	})
	ip.SetChecksum(^ip.CalculateChecksum())
	icmp := header.ICMPv4(ip.Payload())
	icmp.SetType(header.ICMPv4Echo)
	icmp.SetIdent(id)
	icmp.SetSequence(seq)
	copy(icmp.Payload(), "ulagg rx-all injected echo req..")
	icmp.SetChecksum(^checksum.Checksum(icmp, 0))
	return b
}

// echoReplySniffer counts ICMPv4 echo replies arriving in a namespace, by
// identifier, with a raw socket there.
type echoReplySniffer struct {
	mu sync.Mutex
	// +checklocks:mu
	byID map[uint16]map[uint16]bool
}

func newEchoReplySniffer(t testing.TB, ns string) *echoReplySniffer {
	t.Helper()
	fd := -1
	err := lab.Do(ns, func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	if err != nil {
		t.Fatalf("raw ICMP socket: %v", err)
	}
	tv := unix.NsecToTimeval(int64(20 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	s := &echoReplySniffer{byID: map[uint16]map[uint16]bool{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < header.IPv4MinimumSize {
				continue
			}
			ip := header.IPv4(buf[:n])
			hl := int(ip.HeaderLength())
			if n < hl+header.ICMPv4MinimumSize || ip.SourceAddress() != tcpip.AddrFrom4(laggAddr.As4()) {
				continue
			}
			icmp := header.ICMPv4(buf[hl:n])
			if icmp.Type() != header.ICMPv4EchoReply {
				continue
			}
			id, seq := binary.BigEndian.Uint16(icmp[4:]), binary.BigEndian.Uint16(icmp[6:])
			s.mu.Lock()
			if s.byID[id] == nil {
				s.byID[id] = map[uint16]bool{}
			}
			s.byID[id][seq] = true
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

// count returns how many distinct echo replies with identifier id arrived.
func (s *echoReplySniffer) count(id uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID[id])
}
