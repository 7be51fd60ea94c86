package testkit

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/waiter"
)

// fullAddr is addr as gVisor wants it, on any NIC, and its network
// protocol. An invalid or unspecified address means any (IPv4 unless addr
// is an IPv6 address).
func fullAddr(addr netip.AddrPort) (tcpip.FullAddress, tcpip.NetworkProtocolNumber) {
	proto := ipv4.ProtocolNumber
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		proto = ipv6.ProtocolNumber
	}
	fa := tcpip.FullAddress{Port: addr.Port()}
	if a := addr.Addr().Unmap(); a.IsValid() && !a.IsUnspecified() {
		fa.Addr = tcpip.AddrFromSlice(a.AsSlice())
	}
	return fa, proto
}

// ListenTCP listens on gVisor stack s at addr (port 0: any free port)
// until the test ends.
func ListenTCP(t testing.TB, s *stack.Stack, addr netip.AddrPort) net.Listener {
	t.Helper()
	fa, proto := fullAddr(addr)
	ln, err := gonet.ListenTCP(s, fa, proto)
	if err != nil {
		t.Fatalf("gonet listen on %v: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// GonetDialer dials addr over TCP from gVisor stack s.
func GonetDialer(s *stack.Stack, addr netip.AddrPort) Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		fa, proto := fullAddr(addr)
		c, err := gonet.DialContextTCP(ctx, s, fa, proto)
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// Ping sends ICMP echo requests from gVisor stack s to dst through a ping
// endpoint, one every 200 ms, until a reply carrying its payload arrives
// (nil) or timeout passes.
func Ping(s *stack.Stack, dst netip.Addr, timeout time.Duration) error {
	netProto, transProto := ipv4.ProtocolNumber, header.ICMPv4ProtocolNumber
	if dst.Is6() {
		netProto, transProto = ipv6.ProtocolNumber, header.ICMPv6ProtocolNumber
	}
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(transProto, netProto, &wq)
	if terr != nil {
		return fmt.Errorf("icmp endpoint: %s", terr)
	}
	defer ep.Close()
	we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
	wq.EventRegister(&we)
	defer wq.EventUnregister(&we)
	if terr := ep.Connect(tcpip.FullAddress{Addr: tcpip.AddrFromSlice(dst.AsSlice())}); terr != nil {
		return fmt.Errorf("icmp connect: %s", terr)
	}
	// ICMPv4 and ICMPv6 echo headers have the same size and layout.
	payload := []byte("ulagg-ping")
	deadline := time.Now().Add(timeout)
	for seq := uint16(1); time.Now().Before(deadline); seq++ {
		req := make([]byte, header.ICMPv4MinimumSize+len(payload))
		if dst.Is6() {
			h := header.ICMPv6(req)
			h.SetType(header.ICMPv6EchoRequest)
			h.SetSequence(seq)
		} else {
			h := header.ICMPv4(req)
			h.SetType(header.ICMPv4Echo)
			h.SetSequence(seq)
		}
		copy(req[header.ICMPv4MinimumSize:], payload)
		var r bytes.Reader
		r.Reset(req)
		if _, terr := ep.Write(&r, tcpip.WriteOptions{}); terr != nil {
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				return fmt.Errorf("icmp write: %s", terr)
			}
		}
		wait := time.NewTimer(min(200*time.Millisecond, time.Until(deadline)+time.Millisecond))
	read:
		for {
			var buf bytes.Buffer
			_, terr := ep.Read(&buf, tcpip.ReadOptions{})
			if terr == nil {
				b := buf.Bytes()
				if len(b) >= header.ICMPv4MinimumSize && bytes.Equal(b[header.ICMPv4MinimumSize:], payload) {
					wait.Stop()
					return nil
				}
				continue
			}
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				wait.Stop()
				return fmt.Errorf("icmp read: %s", terr)
			}
			select {
			case <-ready:
			case <-wait.C:
				break read
			}
		}
	}
	return fmt.Errorf("no echo reply from %s within %v", dst, timeout)
}
