package integration

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// startApplianceServices is startAppliance with the services given.
func startApplianceServices(t testing.TB, lc config.Lagg, netns string, services []config.Service) *app {
	t.Helper()
	cfg := config.Default()
	cfg.Laggs = []config.Lagg{lc}
	cfg.Services = services
	tl := newTestLog(t)
	a, err := appliance.New(cfg, appliance.Options{Logger: tl.logger, OpenPort: nsOpener(netns)})
	if err != nil {
		t.Fatalf("appliance.New: %v", err)
	}
	ap := &app{a: a, l: a.Lagg(lc.Name), log: tl}
	t.Cleanup(a.Close)
	testkit.WaitFor(t, 5*time.Second, "lagg0 up", func() bool { return ap.l.Status().Up })
	return ap
}

// rawUDPSender sends UDP datagrams whose header (checksum included) the
// test writes, through a raw IPv4 socket in a namespace: the kernel adds
// the IP header, fragments what exceeds the MTU and leaves the UDP
// checksum alone.
type rawUDPSender struct{ fd int }

func newRawUDPSender(t testing.TB, ns string) *rawUDPSender {
	t.Helper()
	s := &rawUDPSender{fd: -1}
	if err := lab.Do(ns, func() (err error) {
		s.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		return err
	}); err != nil {
		t.Fatalf("raw UDP socket in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// send sends payload from src to dst with the right UDP checksum, or one
// that is off by one bit pair when bad.
func (s *rawUDPSender) send(t testing.TB, src, dst netip.AddrPort, payload []byte, bad bool) {
	t.Helper()
	seg := make([]byte, header.UDPMinimumSize+len(payload))
	u := header.UDP(seg)
	u.Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(len(seg))})
	copy(seg[header.UDPMinimumSize:], payload)
	xsum := ^checksum.Checksum(seg, header.PseudoHeaderChecksum(header.UDPProtocolNumber,
		tcpip.AddrFrom4(src.Addr().As4()), tcpip.AddrFrom4(dst.Addr().As4()), uint16(len(seg))))
	if xsum == 0 {
		xsum = 0xffff
	}
	if bad {
		xsum ^= 0x0101
	}
	u.SetChecksum(xsum)
	if err := unix.Sendto(s.fd, seg, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

// TestChecksumUDPEcho: UDP datagrams with a wrong checksum, written by a
// raw socket in the kernel host's namespace to the appliance's udp-echo
// service (arriving through AF_PACKET without the kernel's word on their
// checksum), are not echoed, whole or fragmented, and are counted as
// checksum drops; the same datagrams with the right checksum are echoed;
// and the kernel's own UDP (a partial checksum on the veth, vouched for by
// the kernel) still works, whole and fragmented.
func TestChecksumUDPEcho(t *testing.T) {
	tp := newTopo(t, 1)
	ap := startApplianceServices(t, laggConfig(config.ProtoFailover, tp.ports...), tp.lag,
		[]config.Service{{Kind: "udp-echo", Port: echoPort}})
	pingOK(t, tp.host, 3)
	port := tp.ports[0]
	lagg := netip.AddrPortFrom(laggAddr, echoPort)
	raw := newRawUDPSender(t, tp.host)
	const srcPort = 40001
	pc, err := lab.ListenPacket(tp.host, "udp4", net.JoinHostPort(hostIP, strconv.Itoa(srcPort)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	echoed := func(want []byte, wait time.Duration) bool {
		buf := make([]byte, 65536)
		deadline := time.Now().Add(wait)
		for {
			_ = pc.SetReadDeadline(deadline)
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return false
			}
			if bytes.Equal(buf[:n], want) {
				return true
			}
		}
	}
	drops := func() uint64 { return portCounters(t, ap.l, port).Drops["checksum"] }
	var summary []string
	for _, size := range []int{64, 3000} {
		for _, bad := range []bool{true, false} {
			name := fmt.Sprintf("raw %d B, checksum %s", size, map[bool]string{true: "wrong", false: "right"}[bad])
			t.Run(name, func(t *testing.T) {
				payload := bytes.Repeat([]byte(fmt.Sprintf("%s|", name)), size/len(name)+1)[:size]
				before := drops()
				raw.send(t, netip.AddrPortFrom(hostAddr, srcPort), lagg, payload, bad)
				wait := time.Second
				if bad {
					wait = 500 * time.Millisecond
				}
				got := echoed(payload, wait)
				d := drops() - before
				summary = append(summary, fmt.Sprintf("%s: echoed %v, checksum drops +%d", name, got, d))
				if got == bad {
					t.Errorf("echoed: %v, want %v", got, !bad)
				}
				if want := map[bool]uint64{true: 1, false: 0}[bad]; d != want {
					t.Errorf("checksum drops: +%d, want +%d", d, want)
				}
			})
		}
	}
	// The kernel's own UDP socket: partial checksums, vouched for.
	for _, size := range []int{64, 3000} {
		msg := bytes.Repeat([]byte("kernel udp|"), size/11+1)[:size]
		if _, err := pc.WriteTo(msg, net.UDPAddrFromAddrPort(lagg)); err != nil {
			t.Fatal(err)
		}
		if !echoed(msg, 2*time.Second) {
			t.Errorf("kernel UDP %d B: not echoed", size)
		}
		summary = append(summary, fmt.Sprintf("kernel udp %d B: echoed", size))
	}
	for _, s := range summary {
		t.Logf("measure: udp-echo through afpacket, %s", s)
	}
}
