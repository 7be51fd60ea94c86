package lagg_test

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg"
)

// hotFlows are the flows the allocation tests and benchmarks send: half
// TCP over IPv4, half TCP over IPv6, with different source ports.
func hotFlows(v6 bool, n int) []flow {
	var fs []flow
	for i := range n {
		f := tcp4(uint16(40000+i), 443)
		if v6 {
			f.src, f.dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
		}
		fs = append(fs, f)
	}
	return fs
}

// outbound returns one packet and one single-packet list (what the stack's
// default queueing discipline hands the lagg) per flow; the packets are
// released when the test ends.
func outbound(tb testing.TB, fs []flow) ([]*stack.PacketBuffer, []stack.PacketBufferList) {
	tb.Helper()
	var pkts []*stack.PacketBuffer
	var lists []stack.PacketBufferList
	for _, f := range fs {
		pkt := f.packet()
		tb.Cleanup(pkt.DecRef)
		var l stack.PacketBufferList
		l.PushBack(pkt)
		pkts = append(pkts, pkt)
		lists = append(lists, l)
	}
	return pkts, lists
}

// inbound returns f's frame as a port delivers it: Ethernet header consumed.
func inbound(tb testing.TB, f flow) *stack.PacketBuffer {
	tb.Helper()
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f.frame())})
	tb.Cleanup(pkt.DecRef)
	if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		tb.Fatal("frame shorter than an Ethernet header")
	}
	pkt.NetworkProtocolNumber = f.netProto()
	return pkt
}

func TestTxPathAllocatesNothing(t *testing.T) {
	l, sinks := newSinkLagg(t, "loadbalance", 4)
	for _, v6 := range []bool{false, true} {
		pkts, lists := outbound(t, hotFlows(v6, 16))
		var total uint64
		for _, s := range sinks {
			total += s.frames.Load()
		}
		const runs = 200
		allocs := testing.AllocsPerRun(runs, func() {
			for _, list := range lists {
				if _, err := l.WritePackets(list); err != nil {
					t.Fatalf("WritePackets: %s", err)
				}
			}
		})
		if allocs != 0 {
			t.Errorf("v6=%v: WritePackets: got %v allocations per run, want 0", v6, allocs)
		}
		var after uint64
		used := 0
		for _, s := range sinks {
			after += s.frames.Load()
			if s.frames.Load() > 0 {
				used++
			}
		}
		if want := uint64((runs + 1) * len(lists)); after-total != want {
			t.Errorf("v6=%v: frames the ports got: got %d, want %d", v6, after-total, want)
		}
		if used < 2 {
			t.Errorf("v6=%v: ports used: got %d, want the flows spread over >= 2", v6, used)
		}
		if allocs := testing.AllocsPerRun(runs, func() {
			for _, pkt := range pkts {
				if l.SelectTxPort(pkt) == "" {
					t.Fatal("SelectTxPort: no port")
				}
			}
		}); allocs != 0 {
			t.Errorf("v6=%v: SelectTxPort: got %v allocations per run, want 0", v6, allocs)
		}
	}
}

func TestRxPathAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name      string
		proto     string
		rxAll     bool
		delivered bool // port 1 accepts frames
	}{
		{"loadbalance accepts", "loadbalance", true, true},
		{"failover rx-all accepts", "failover", true, true},
		{"failover standby drops", "failover", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, sinks := newSinkLagg(t, tc.proto, 2)
			if tc.proto == "failover" {
				if err := l.Update(func(c *lagg.Config) { c.RxAll = tc.rxAll }); err != nil {
					t.Fatal(err)
				}
			}
			var d countingDispatcher
			l.Attach(&d)
			shim := lagg.PortDispatcher(l, sinks[1].Name())
			if shim == nil {
				t.Fatalf("no receive shim for %s", sinks[1].Name())
			}
			pkt := inbound(t, tcp4(40000, 443))
			const runs = 1000
			allocs := testing.AllocsPerRun(runs, func() {
				shim.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
			})
			if allocs != 0 {
				t.Errorf("DeliverNetworkPacket: got %v allocations per run, want 0", allocs)
			}
			want, wantDrops := uint64(runs+1), uint64(0)
			if !tc.delivered {
				want, wantDrops = 0, runs+1
			}
			if got := d.network.Load(); got != want {
				t.Errorf("frames delivered to the stack: got %d, want %d", got, want)
			}
			if got := portStatus(t, l, sinks[1].Name()).Counters.Drop(lagg.DropInactivePort); got != wantDrops {
				t.Errorf("DropInactivePort: got %d, want %d", got, wantDrops)
			}
		})
	}
}

// TestTxMixedBatch: a batch whose frames go to different ports (a queueing
// discipline builds those) reaches every port it should, without allocating.
func TestTxMixedBatch(t *testing.T) {
	l, sinks := newSinkLagg(t, "loadbalance", 4)
	pkts, _ := outbound(t, hotFlows(false, 32))
	var batch stack.PacketBufferList
	want := map[string]uint64{}
	for _, pkt := range pkts {
		batch.PushBack(pkt)
		want[l.SelectTxPort(pkt)]++
	}
	if n, err := l.WritePackets(batch); n != len(pkts) || err != nil {
		t.Fatalf("WritePackets: got %d, %v, want %d, nil", n, err, len(pkts))
	}
	for _, s := range sinks {
		if got := s.frames.Load(); got != want[s.Name()] {
			t.Errorf("port %s: got %d frames, want %d", s.Name(), got, want[s.Name()])
		}
	}
	// Split by port without allocating: each port sends its frames at once.
	if allocs := testing.AllocsPerRun(100, func() { _, _ = l.WritePackets(batch) }); allocs != 0 {
		t.Errorf("a mixed batch of %d frames over 4 ports: %v allocations, want 0", len(pkts), allocs)
	}
}
