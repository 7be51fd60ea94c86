package lagg_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// TestPortForMatchesWire sends one UDP datagram per flow over a real
// loadbalance pair and checks each left on the wire PortFor names, for
// IPv4 and IPv6, with the flow given from either end.
func TestPortForMatchesWire(t *testing.T) {
	const flows = 24
	p := newPair(t, "loadbalance", 3, nil)
	var mu sync.Mutex
	seen := map[uint16]string{} // source port -> port of A it left on
	for i, w := range p.wires {
		name := p.portA(i)
		w.SetObserver(func(from *linkeptest.WireEnd, frame []byte) {
			if from != w.A {
				return
			}
			if sport, ok := udpSourcePort(frame); ok {
				mu.Lock()
				seen[sport] = name
				mu.Unlock()
			}
		})
	}
	for _, v6 := range []bool{false, true} {
		src, dst := p.a.addr.Addr(), p.b.addr.Addr()
		netProto := ipv4.ProtocolNumber
		if v6 {
			src, dst, netProto = v6A, v6B, ipv6.ProtocolNumber
		}
		t.Run(fmt.Sprintf("v6=%v", v6), func(t *testing.T) {
			base := uint16(20000)
			if v6 {
				base = 30000
			}
			for i := range flows {
				sport := base + uint16(i)
				la := fullAddr(netip.PrefixFrom(src, 0), sport)
				ra := fullAddr(netip.PrefixFrom(dst, 0), 9)
				c, err := gonet.DialUDP(p.a.s, &la, &ra, netProto)
				if err != nil {
					t.Fatal(err)
				}
				_, err = c.Write([]byte("x"))
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				n := 0
				for i := range flows {
					if _, ok := seen[base+uint16(i)]; ok {
						n++
					}
				}
				mu.Unlock()
				if n == flows {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("saw %d of %d datagrams on the wires", n, flows)
				}
				time.Sleep(10 * time.Millisecond)
			}
			used := map[string]bool{}
			for i := range flows {
				sport := base + uint16(i)
				out := lagg.Flow{Proto: 17, Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, 9),
					SrcMAC: p.a.l.LinkAddress(), DstMAC: p.b.l.LinkAddress()}
				// The hash is symmetric: the reply's headers name the same port.
				back := lagg.Flow{Proto: 17, Src: out.Dst, Dst: out.Src, SrcMAC: out.DstMAC, DstMAC: out.SrcMAC}
				for _, f := range []lagg.Flow{out, back} {
					frame, err := f.Frame()
					if err != nil {
						t.Fatal(err)
					}
					got, err := p.a.l.PortFor(frame)
					if err != nil {
						t.Fatal(err)
					}
					mu.Lock()
					want := seen[sport]
					mu.Unlock()
					if got != want {
						t.Errorf("flow %v -> %v: PortFor says %s, the datagram left on %s", f.Src, f.Dst, got, want)
					}
					used[got] = true
				}
			}
			if len(used) < 2 {
				t.Errorf("%d flows all on %v: the test shows nothing", flows, used)
			}
		})
	}
}

// udpSourcePort returns the UDP source port of an untagged Ethernet frame.
func udpSourcePort(frame []byte) (uint16, bool) {
	if len(frame) < 14 {
		return 0, false
	}
	l3 := frame[14:]
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case 0x0800:
		if len(l3) < 20 || l3[9] != 17 {
			return 0, false
		}
		ihl := int(l3[0]&0xf) * 4
		if len(l3) < ihl+2 {
			return 0, false
		}
		return binary.BigEndian.Uint16(l3[ihl:]), true
	case 0x86dd:
		if len(l3) < 42 || l3[6] != 17 {
			return 0, false
		}
		return binary.BigEndian.Uint16(l3[40:]), true
	}
	return 0, false
}

func TestPortForProtocols(t *testing.T) {
	f := lagg.Flow{Proto: 6, Src: netip.MustParseAddrPort("10.0.0.1:1234"), Dst: netip.MustParseAddrPort("10.0.0.2:80")}
	frame, err := f.Frame()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proto   string
		want    string // the port, or "" for an error
		single  bool   // errors.Is(err, ErrNoSinglePort)
		disable bool   // port 0 disabled first
	}{
		{proto: "failover", want: "0"},
		{proto: "failover", want: "1", disable: true},
		{proto: "roundrobin", single: true},
		{proto: "broadcast", single: true},
		{proto: "none"},
	} {
		t.Run(fmt.Sprintf("%s/disable=%v", tc.proto, tc.disable), func(t *testing.T) {
			p := newPair(t, tc.proto, 2, nil)
			if tc.disable {
				if err := p.a.l.SetPortDisabled(p.portA(0), true); err != nil {
					t.Fatal(err)
				}
			}
			got, err := p.a.l.PortFor(frame)
			switch {
			case tc.want != "":
				idx := 0
				if tc.want == "1" {
					idx = 1
				}
				if err != nil || got != p.portA(idx) {
					t.Fatalf("got %q, %v; want %s", got, err, p.portA(idx))
				}
			case tc.single:
				if !errors.Is(err, lagg.ErrNoSinglePort) {
					t.Fatalf("got %q, %v; want ErrNoSinglePort", got, err)
				}
			default:
				if err == nil {
					t.Fatalf("got %q; want an error: the lagg is down", got)
				}
			}
		})
	}
}

func TestFlowFrameRejects(t *testing.T) {
	for _, f := range []lagg.Flow{
		{Proto: 6, Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("[fd00::1]:2")},
		{Proto: 6},
		{Proto: 6, Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("10.0.0.2:2"), VLAN: 4095},
		{Proto: 6, Src: netip.MustParseAddrPort("10.0.0.1:1"), Dst: netip.MustParseAddrPort("10.0.0.2:2"), SrcMAC: "\x01\x02"},
	} {
		if _, err := f.Frame(); err == nil {
			t.Errorf("%+v: Frame gave no error", f)
		}
	}
	l, err := lagg.New(options("laggFQ", "failover"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, frame := range [][]byte{nil, make([]byte, 10), append(make([]byte, 12), 0x08, 0x00, 0x45)} {
		if _, err := l.PortFor(frame); err == nil {
			t.Errorf("PortFor(%x): no error", frame)
		}
	}
}
