package lagg_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
)

// flow is one transport flow as the hash sees it.
type flow struct {
	srcMAC, dstMAC tcpip.LinkAddress
	src, dst       netip.Addr
	proto          tcpip.TransportProtocolNumber // TCP or UDP
	sport, dport   uint16
	flowLabel      uint32 // IPv6 only
}

func (f flow) reverse() flow {
	f.srcMAC, f.dstMAC = f.dstMAC, f.srcMAC
	f.src, f.dst = f.dst, f.src
	f.sport, f.dport = f.dport, f.sport
	return f
}

func (f flow) netProto() tcpip.NetworkProtocolNumber {
	if f.src.Is6() {
		return header.IPv6ProtocolNumber
	}
	return header.IPv4ProtocolNumber
}

const payloadLen = 64

// transportHeader returns f's TCP or UDP header.
func (f flow) transportHeader() []byte {
	if f.proto == header.UDPProtocolNumber {
		u := header.UDP(make([]byte, header.UDPMinimumSize))
		u.Encode(&header.UDPFields{SrcPort: f.sport, DstPort: f.dport, Length: header.UDPMinimumSize + payloadLen})
		return u
	}
	h := header.TCP(make([]byte, header.TCPMinimumSize))
	h.Encode(&header.TCPFields{SrcPort: f.sport, DstPort: f.dport, DataOffset: header.TCPMinimumSize, Flags: header.TCPFlagAck, WindowSize: 65535})
	return h
}

// networkHeader returns f's IP header for a payload of l4len bytes.
func (f flow) networkHeader(l4len int) []byte {
	src, dst := tcpip.AddrFromSlice(f.src.AsSlice()), tcpip.AddrFromSlice(f.dst.AsSlice())
	if f.src.Is6() {
		ip := header.IPv6(make([]byte, header.IPv6MinimumSize))
		ip.Encode(&header.IPv6Fields{PayloadLength: uint16(l4len), TransportProtocol: f.proto, HopLimit: 64,
			SrcAddr: src, DstAddr: dst, FlowLabel: f.flowLabel})
		return ip
	}
	ip := header.IPv4(make([]byte, header.IPv4MinimumSize))
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + l4len), TTL: 64,
		Protocol: uint8(f.proto), SrcAddr: src, DstAddr: dst})
	ip.SetChecksum(^ip.CalculateChecksum())
	return ip
}

func (f flow) ethernetHeader() []byte {
	eth := header.Ethernet(make([]byte, header.EthernetMinimumSize))
	eth.Encode(&header.EthernetFields{SrcAddr: f.srcMAC, DstAddr: f.dstMAC, Type: f.netProto()})
	return eth
}

// frame returns f's first frame as raw bytes, as HashFrame takes it, with
// a correct transport checksum (a lagg verifies it on receive).
func (f flow) frame() []byte {
	l4 := f.transportHeader()
	l3 := f.networkHeader(len(l4) + payloadLen)
	seg := append(l4, make([]byte, payloadLen)...)
	src, dst := tcpip.AddrFromSlice(f.src.AsSlice()), tcpip.AddrFromSlice(f.dst.AsSlice())
	xsum := ^checksum.Checksum(seg, header.PseudoHeaderChecksum(f.proto, src, dst, uint16(len(seg))))
	if f.proto == header.UDPProtocolNumber {
		header.UDP(seg).SetChecksum(xsum)
	} else {
		header.TCP(seg).SetChecksum(xsum)
	}
	b := append(f.ethernetHeader(), l3...)
	return append(b, seg...)
}

// packet returns f's first frame as an outbound packet after the lagg's
// AddHeader: link, network and transport headers pushed. The caller owns it.
func (f flow) packet() *stack.PacketBuffer {
	l4 := f.transportHeader()
	l3 := f.networkHeader(len(l4) + payloadLen)
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: header.EthernetMinimumSize + len(l3) + len(l4),
		Payload:            buffer.MakeWithData(make([]byte, payloadLen)),
	})
	copy(pkt.TransportHeader().Push(len(l4)), l4)
	pkt.TransportProtocolNumber = f.proto
	copy(pkt.NetworkHeader().Push(len(l3)), l3)
	pkt.NetworkProtocolNumber = f.netProto()
	copy(pkt.LinkHeader().Push(header.EthernetMinimumSize), f.ethernetHeader())
	return pkt
}

var (
	macX = tcpip.LinkAddress("\x02\x00\x00\x00\x01\x01")
	macY = tcpip.LinkAddress("\x02\x00\x00\x00\x02\x01")
)

func tcp4(sport, dport uint16) flow {
	return flow{srcMAC: macX, dstMAC: macY, src: netip.MustParseAddr("10.0.0.1"), dst: netip.MustParseAddr("10.0.0.2"),
		proto: header.TCPProtocolNumber, sport: sport, dport: dport}
}

func TestHashFrameSymmetric(t *testing.T) {
	v6 := func(f flow) flow {
		f.src, f.dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2:1")
		return f
	}
	udp := func(f flow) flow { f.proto = header.UDPProtocolNumber; return f }
	tests := []struct {
		name string
		f    flow
	}{
		{"tcp4", tcp4(40000, 80)},
		{"udp4", udp(tcp4(5353, 53))},
		{"tcp6", v6(tcp4(40001, 443))},
		{"udp6", udp(v6(tcp4(1234, 4321)))},
		{"tcp6 with flow label", func() flow { f := v6(tcp4(40002, 22)); f.flowLabel = 0x12345; return f }()},
		{"tcp4 same port both ends", tcp4(7000, 7000)},
	}
	layers := []lagg.HashLayers{lagg.HashAll, lagg.HashL2, lagg.HashL3, lagg.HashL4, lagg.HashL3 | lagg.HashL4}
	for _, tc := range tests {
		for _, h := range layers {
			t.Run(fmt.Sprintf("%s/%v", tc.name, h), func(t *testing.T) {
				fwd, rev := lagg.HashFrame(tc.f.frame(), h), lagg.HashFrame(tc.f.reverse().frame(), h)
				if fwd != rev {
					t.Errorf("got %#x one way and %#x the other, want equal", fwd, rev)
				}
			})
		}
		t.Run(tc.name+"/ports matter", func(t *testing.T) {
			other := tc.f
			other.sport++
			if a, b := lagg.HashFrame(tc.f.frame(), lagg.HashAll), lagg.HashFrame(other.frame(), lagg.HashAll); a == b {
				t.Errorf("source ports %d and %d: both hash to %#x, want different", tc.f.sport, other.sport, a)
			}
		})
	}
}

func TestHashLayersSelectWhatIsHashed(t *testing.T) {
	// Flows between the same two MACs, with different addresses and ports.
	var flows []flow
	for i := range 64 {
		f := tcp4(uint16(30000+i*7), uint16(80+i%3))
		f.src = netip.AddrFrom4([4]byte{10, 0, byte(i / 8), byte(1 + i%8)})
		flows = append(flows, f)
	}
	distinct := func(h lagg.HashLayers, fs []flow) int {
		seen := map[uint32]bool{}
		for _, f := range fs {
			seen[lagg.HashFrame(f.frame(), h)] = true
		}
		return len(seen)
	}
	if got := distinct(lagg.HashL2, flows); got != 1 {
		t.Errorf("l2 only, 64 flows between the same MACs: got %d distinct hashes, want 1", got)
	}
	if got := distinct(lagg.HashAll, flows); got < 60 {
		t.Errorf("l2+l3+l4, 64 flows: got %d distinct hashes, want >= 60", got)
	}
	// Same addresses, different ports: l3 alone cannot tell them apart.
	var samePair []flow
	for i := range 64 {
		samePair = append(samePair, tcp4(uint16(40000+i), 80))
	}
	if got := distinct(lagg.HashL3, samePair); got != 1 {
		t.Errorf("l3 only, 64 flows between the same addresses: got %d distinct hashes, want 1", got)
	}
	if got := distinct(lagg.HashL3|lagg.HashL4, samePair); got < 60 {
		t.Errorf("l3+l4, 64 flows between the same addresses: got %d distinct hashes, want >= 60", got)
	}
	// Non-IP frames hash on L2 whatever the policy.
	arp := make([]byte, header.EthernetMinimumSize+header.ARPSize)
	header.Ethernet(arp).Encode(&header.EthernetFields{SrcAddr: macX, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	if a, b := lagg.HashFrame(arp, lagg.HashL3), lagg.HashFrame(arp, lagg.HashL2); a != b {
		t.Errorf("ARP frame: l3 policy gives %#x, l2 policy %#x, want equal", a, b)
	}
}

// newSinkLagg returns a lagg running proto over n sinkPorts, not attached to
// a stack.
func newSinkLagg(t testing.TB, proto string, n int) (*lagg.Lagg, []*sinkPort) {
	t.Helper()
	id := nextID()
	l, err := lagg.New(options(fmt.Sprintf("sink%d", id), proto))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	var ports []*sinkPort
	for i := range n {
		w := newWire(id, i)
		sp := &sinkPort{WireEnd: w.A}
		if err := l.AddPort(sp, lagg.DefaultPriority); err != nil {
			t.Fatal(err)
		}
		ports = append(ports, sp)
	}
	return l, ports
}

// TestSelectTxPortHashLayers: the layer choice reaches the transmit path.
func TestSelectTxPortHashLayers(t *testing.T) {
	l, _ := newSinkLagg(t, "loadbalance", 4)
	used := func() map[string]int {
		m := map[string]int{}
		for i := range 64 {
			pkt := tcp4(uint16(40000+i), 80).packet()
			m[l.SelectTxPort(pkt)]++
			pkt.DecRef()
		}
		return m
	}
	if got := used(); len(got) != 4 {
		t.Errorf("all layers, 64 flows over 4 ports: got ports %v, want all 4 used", got)
	}
	l.Update(func(c *lagg.Config) { c.Hash = lagg.HashL2 })
	if got := l.Status().Hash; got != lagg.HashL2 {
		t.Errorf("Status().Hash: got %v, want %v", got, lagg.HashL2)
	}
	if got := used(); len(got) != 1 {
		t.Errorf("l2 only, 64 flows between the same MACs: got ports %v, want one", got)
	}
}

// TestSelectTxPortSpread: over many flows each port gets its share within
// 10%, for port counts that are and are not powers of two.
func TestSelectTxPortSpread(t *testing.T) {
	const flows = 8192
	for _, n := range []int{2, 3, 4, 5, 8} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			l, _ := newSinkLagg(t, "loadbalance", n)
			count := map[string]int{}
			for i := range flows {
				f := tcp4(uint16(1024+i), 443)
				f.src = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
				pkt := f.packet()
				count[l.SelectTxPort(pkt)]++
				pkt.DecRef()
			}
			checkSpread(t, "flows", count, l.Ports(), 0.10)
		})
	}
}

// checkSpread checks that every port's share of count is within tol of
// even.
func checkSpread(t *testing.T, what string, count map[string]int, ports []string, tol float64) {
	t.Helper()
	total := 0
	for _, c := range count {
		total += c
	}
	even := float64(total) / float64(len(ports))
	for _, p := range ports {
		if got := float64(count[p]); got < even*(1-tol) || got > even*(1+tol) {
			t.Errorf("port %s: got %.0f %s of %d, want %.0f ± %.0f%% (all: %v)", p, got, what, total, even, tol*100, count)
		}
	}
}

// TestLoadbalanceSpreadsTCPFlows runs 64 real TCP connections, each with its
// own source port and the same amount of data, over 2 and 4 ports, and
// checks from the ports' byte counters that the frames of each flow left on
// the port the hash chose and that the ports share the flows evenly.
//
// A plain hash % n would place each flow like a fair die, and 64 flows
// over 4 ports would land within ±25% of even only about half the time; the
// lagg binds a new flow's bucket to the least loaded port, so they land
// within ±25% every time (only flows that share a bucket share a port).
func TestLoadbalanceSpreadsTCPFlows(t *testing.T) {
	const (
		flows   = 64
		perFlow = 128 << 10
		dport   = 5001
	)
	for _, tc := range []struct {
		ports int
		tol   float64
	}{{2, 0.25}, {4, 0.25}} {
		n := tc.ports
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := newPair(t, "loadbalance", n, nil)
			sink(t, p.b, dport)
			before := txBytes(p.a.l)
			var wg sync.WaitGroup
			errs := make(chan error, flows)
			sem := make(chan struct{}, 8)
			for i := range flows {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					errs <- sendFlow(p.a, p.b, uint16(41000+i), dport, perFlow)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			after := txBytes(p.a.l)
			count := map[string]int{}
			for name, b := range after {
				count[name] = int(b - before[name])
			}
			checkSpread(t, "bytes", count, p.a.l.Ports(), tc.tol)
			// Every flow's frames left on the port SelectTxPort names, so the
			// per-port bytes match the per-port flow count.
			flowsOn := map[string]int{}
			for i := range flows {
				f := tcp4(uint16(41000+i), dport)
				f.srcMAC, f.dstMAC = p.a.l.LinkAddress(), p.b.l.LinkAddress()
				pkt := f.packet()
				flowsOn[p.a.l.SelectTxPort(pkt)]++
				pkt.DecRef()
			}
			for name, c := range count {
				want := float64(flowsOn[name]) * perFlow
				if got := float64(c); got < want || got > want*1.15 {
					t.Errorf("port %s: got %d bytes, want %.0f..%.0f for its %d flows", name, c, want, want*1.15, flowsOn[name])
				}
			}
			t.Logf("%d ports: flows per port %v, bytes %v", n, flowsOn, count)
		})
	}
}

func txBytes(l *lagg.Lagg) map[string]uint64 {
	m := map[string]uint64{}
	for _, ps := range l.Status().Ports {
		m[ps.Name] = ps.Counters.TxBytes
	}
	return m
}

// sink accepts connections on n at port, reads each to EOF and closes it.
func sink(t *testing.T, n *node, port uint16) {
	t.Helper()
	testkit.ServeTCP(t, n.listen(t, port), func(c net.Conn) { _, _ = io.Copy(io.Discard, c) })
}

// sendFlow sends size bytes from source port sport to the sink.
func sendFlow(from, to *node, sport, dport uint16, size int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := gonet.DialTCPWithBind(ctx, from.s, fullAddr(from.addr, sport), fullAddr(to.addr, dport), ipv4.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("flow %d: dial: %w", sport, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := c.Write(make([]byte, size)); err != nil {
		return fmt.Errorf("flow %d: write: %w", sport, err)
	}
	if err := c.CloseWrite(); err != nil {
		return fmt.Errorf("flow %d: close write: %w", sport, err)
	}
	if _, err := io.Copy(io.Discard, c); err != nil {
		return fmt.Errorf("flow %d: waiting for the sink to close: %w", sport, err)
	}
	return nil
}

var _ linkep.Port = (*sinkPort)(nil)
