package host_test

// Fixtures for the host-port tests: private network namespaces, veth pairs,
// a gVisor stack over a port, and kernel-side peers (ping, TCP echo, raw
// frames) living inside those namespaces. Nothing touches the root namespace
// except creating and deleting the namespaces themselves.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ulagg/ulagg/linkep"
)

// htRequireRoot skips without root, except under CI=true where it fails.
func htRequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("needs root (CI=true)")
	}
	t.Skip("needs root to create network namespaces")
}

// htID returns a short random tag for unique interface and namespace names.
func htID(t testing.TB) string {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

func htRun(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// htNet is a private network namespace with a netlink handle inside it.
type htNet struct {
	name string
	h    netns.NsHandle
	nl   *netlink.Handle
}

func htNewNet(t testing.TB, name string) *htNet {
	t.Helper()
	htRun(t, "ip", "netns", "add", name)
	n := &htNet{name: name, h: -1}
	t.Cleanup(func() {
		if n.nl != nil {
			n.nl.Close()
		}
		n.h.Close()
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	var err error
	if n.h, err = netns.GetFromName(name); err != nil {
		t.Fatal(err)
	}
	if n.nl, err = netlink.NewHandleAt(n.h, unix.NETLINK_ROUTE); err != nil {
		t.Fatal(err)
	}
	// No IPv6 chatter (router solicitations, MLD) on the test links.
	htDo(t, n, func() error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1"), 0)
	})
	return n
}

// htDo runs fn on a thread inside n, on its own goroutine so the caller's
// thread never changes namespace.
func htDo(t testing.TB, n *htNet, fn func() error) {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.h); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func (n *htNet) link(t testing.TB, name string) netlink.Link {
	t.Helper()
	l, err := n.nl.LinkByName(name)
	if err != nil {
		t.Fatalf("%s in %s: %v", name, n.name, err)
	}
	return l
}

func (n *htNet) addAddr(t testing.TB, ifname, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	l := n.link(t, ifname)
	if err := n.nl.AddrAdd(l, a); err != nil {
		t.Fatal(err)
	}
	if err := n.nl.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
}

// htVeth creates a veth pair with one end in a and the other in b. The end in
// a gets ifindex 100: with equal ifindexes on both ends (2 in two fresh
// namespaces) the kernel's linkwatch treats carrier changes as non-urgent and
// batches them up to a second, as it does for physical NICs.
func htVeth(t testing.TB, a *htNet, nameA string, b *htNet, nameB string) {
	t.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: nameA, Index: 100}, PeerName: nameB, PeerNamespace: netlink.NsFd(b.h)}
	if err := a.nl.LinkAdd(v); err != nil {
		t.Fatalf("veth %s/%s: %v", nameA, nameB, err)
	}
	if err := b.nl.LinkSetUp(b.link(t, nameB)); err != nil {
		t.Fatal(err)
	}
}

// htLeakCheck fails the test if goroutines or fds outlive it. Register it
// first so its cleanup runs last.
func htLeakCheck(t *testing.T) {
	htWarmUp()
	g0, f0 := runtime.NumGoroutine(), htFDs()
	t.Cleanup(func() {
		deadline := time.Now().Add(3 * time.Second)
		for {
			g, f := runtime.NumGoroutine(), htFDs()
			if g <= g0 && len(f) <= len(f0) {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("leak: goroutines %d -> %d, fds %d -> %d\nfds now: %v\n%s", g0, g, len(f0), len(f), f, buf)
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

var htWarm sync.Once

// htWarmUp creates the process-lifetime state (netpoller fds, gVisor's
// global goroutines) once, before any baseline is taken.
func htWarmUp() {
	htWarm.Do(func() {
		r, w, _ := os.Pipe()
		r.SetReadDeadline(time.Now())
		r.Close()
		w.Close()
		s := htNewStack(channel.New(1, 1500, ""))
		s.Close()
		s.Wait()
	})
}

func htFDs() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil {
			out = append(out, e.Name()+"="+target)
		}
	}
	return out
}

func htNewStack(ep stack.LinkEndpoint) *stack.Stack {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, icmp.NewProtocol4},
	})
	s.CreateNIC(1, ep)
	return s
}

// htStack puts a gVisor stack with address ip/24 on ep. stop (also run by
// the cleanup) detaches ep, then closes the stack, which closes ep.
//
// Detaching first avoids a gVisor deadlock: Stack.Wait (and RemoveNIC) hold
// the stack's mu while Attach(nil) waits for the RX goroutine, and a frame
// being delivered at that moment may need the same mu (a TCP RST for an
// aborted connection calls FindRoute). fdbased has the same hazard.
func htStack(t *testing.T, ep stack.LinkEndpoint, ip [4]byte) (s *stack.Stack, stop func()) {
	t.Helper()
	s = stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, icmp.NewProtocol4},
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ep.Attach(nil)
			s.Close()
			s.Wait()
		})
	}
	t.Cleanup(stop)
	if err := s.CreateNIC(1, ep); err != nil {
		t.Fatalf("CreateNIC: %v", err)
	}
	addr := tcpip.AddrFrom4(ip)
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{
		Protocol:          ipv4.ProtocolNumber,
		AddressWithPrefix: tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24},
	}, stack.AddressProperties{}); err != nil {
		t.Fatalf("AddProtocolAddress: %v", err)
	}
	subnet := tcpip.AddressWithPrefix{Address: addr, PrefixLen: 24}.Subnet()
	s.SetRouteTable([]tcpip.Route{{Destination: subnet, NIC: 1}})
	return s, stop
}

// htPing sends ICMP echo requests from inside n to dst until one is answered
// or timeout passes.
func htPing(t *testing.T, n *htNet, dst [4]byte, timeout time.Duration) error {
	t.Helper()
	var fd int
	htDo(t, n, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	})
	defer unix.Close(fd)
	tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	id := uint16(os.Getpid())
	deadline := time.Now().Add(timeout)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := []byte{8, 0, 0, 0, byte(id >> 8), byte(id), byte(seq >> 8), byte(seq), 'u', 'l', 'a', 'g', 'g'}
		binary.BigEndian.PutUint16(req[2:], htChecksum(req))
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrInet4{Addr: dst}); err != nil {
			return fmt.Errorf("sendto: %w", err)
		}
		until := time.Now().Add(300 * time.Millisecond)
		buf := make([]byte, 1500)
		for time.Now().Before(until) {
			m, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue // timeout: keep waiting until `until`
			}
			if m < 20 {
				continue
			}
			ihl := int(buf[0]&0xf) * 4
			icmpb := buf[ihl:m]
			if len(icmpb) >= 8 && icmpb[0] == 0 && binary.BigEndian.Uint16(icmpb[4:]) == id &&
				binary.BigEndian.Uint16(icmpb[6:]) == seq && [4]byte(buf[12:16]) == dst {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %v within %v", net.IP(dst[:]), timeout)
}

func htChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// htEchoServer runs a kernel TCP echo server inside n; cleanup stops it and
// waits for its goroutines.
func htEchoServer(t *testing.T, n *htNet, addr string) {
	t.Helper()
	var ln net.Listener
	htDo(t, n, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				// Not io.Copy: TCP-to-TCP copies splice through pooled
				// pipes that outlive the test and trip the fd check.
				buf := make([]byte, 64<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// htTCPEcho connects from s to dst:7 and checks that size bytes come back.
func htTCPEcho(t *testing.T, s *stack.Stack, dst [4]byte, port uint16, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, s, tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4(dst), Port: port}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatalf("dial %v:%d: %v", net.IP(dst[:]), port, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := make([]byte, size)
	rand.Read(msg)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo read: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("echo write: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo: got different bytes back")
	}
}

// htSendRaw sends one Ethernet frame out of ifname from inside n.
func htSendRaw(t *testing.T, n *htNet, ifname string, frame []byte) {
	t.Helper()
	idx := n.link(t, ifname).Attrs().Index
	var fd int
	htDo(t, n, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	defer unix.Close(fd)
	if err := unix.Sendto(fd, frame, 0, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}); err != nil {
		t.Fatalf("raw send on %s: %v", ifname, err)
	}
}

// htForeignFrame is an IPv4 frame for a MAC nobody owns, to ip.
func htForeignFrame(src net.HardwareAddr, ip [4]byte) []byte {
	f := make([]byte, 14+28)
	copy(f, []byte{0x02, 0x00, 0x5e, 0x99, 0x99, 0x99})
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ipb := f[14:]
	ipb[0], ipb[8], ipb[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ipb[2:], 28)
	copy(ipb[12:], []byte{10, 0, 0, 9})
	copy(ipb[16:], ip[:])
	binary.BigEndian.PutUint16(ipb[10:], htChecksum(ipb[:20]))
	return f
}

// htEvents collects a port's events.
type htEvents chan linkep.Event

func htWatch(p linkep.Port) htEvents {
	ch := make(htEvents, 64)
	p.SetEventHandler(func(ev linkep.Event) {
		select {
		case ch <- ev:
		default:
		}
	})
	return ch
}

// next waits for the first event matching want, skipping others.
func (ch htEvents) next(t *testing.T, want func(linkep.Event) bool, what string) linkep.Event {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			if want(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s event within 5s", what)
			return linkep.Event{}
		}
	}
}

func isLink(up bool) func(linkep.Event) bool {
	return func(ev linkep.Event) bool { return ev.Kind == linkep.LinkChanged && ev.Up == up }
}

func isKind(k linkep.EventKind) func(linkep.Event) bool {
	return func(ev linkep.Event) bool { return ev.Kind == k }
}

// htEventually polls cond for up to 5s.
func htEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
