package lagg_test

import (
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// TestBroadcastEveryFrameOnEveryPort: each frame reaches every active port,
// and none reaches a port whose link is down.
func TestBroadcastEveryFrameOnEveryPort(t *testing.T) {
	l, sinks := newSinkLagg(t, "broadcast", 3)
	pkts, lists := outbound(t, hotFlows(false, 16))
	var batch stack.PacketBufferList
	for _, pkt := range pkts {
		batch.PushBack(pkt)
	}
	for _, list := range lists {
		if n, err := l.WritePackets(list); n != 1 || err != nil {
			t.Fatalf("WritePackets: got %d, %v, want 1, nil", n, err)
		}
	}
	if n, err := l.WritePackets(batch); n != len(pkts) || err != nil {
		t.Fatalf("WritePackets(batch): got %d, %v, want %d, nil", n, err, len(pkts))
	}
	for _, s := range sinks {
		if got := s.frames.Load(); got != uint64(2*len(pkts)) {
			t.Errorf("port %s: got %d frames, want %d", s.Name(), got, 2*len(pkts))
		}
	}
	if got := l.SelectTxPort(pkts[0]); got != "" {
		t.Errorf("SelectTxPort: got %q, want \"\" (every port)", got)
	}
	for _, ps := range l.Status().Ports {
		if ps.Flags&lagg.PortDistributing == 0 || ps.Flags&lagg.PortCollecting == 0 {
			t.Errorf("port %s flags %v: want collecting and distributing", ps.Name, ps.Flags)
		}
	}
	if allocs := testing.AllocsPerRun(200, func() {
		if _, err := l.WritePackets(batch); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("broadcast WritePackets: %v allocations per run, want 0", allocs)
	}
}

// TestBroadcastPeersSeeEveryFrame: pings through a broadcast lagg over
// three wires, one of them pulled halfway: every wire whose link is up
// carries every echo request, and every ping is answered.
func TestBroadcastPeersSeeEveryFrame(t *testing.T) {
	p := newPair(t, "broadcast", 3, nil)
	var seen [3]atomic.Int64
	for i, w := range p.wires {
		w.SetObserver(func(from *linkeptest.WireEnd, frame []byte) {
			// IPv4 ICMP echo requests that A sends.
			if from == w.A && len(frame) > 34 && frame[12] == 0x08 && frame[13] == 0x00 && frame[23] == 1 && frame[34] == 8 {
				seen[i].Add(1)
			}
		})
	}
	dst := p.b.addr.Addr()
	const pings = 10
	for range pings {
		if err := testkit.Ping(p.a.s, dst, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i := range seen {
		if got := seen[i].Load(); got != pings {
			t.Errorf("wire %d: saw %d echo requests, want %d", i, got, pings)
		}
	}
	p.wires[2].SetLinkUp(false)
	for range pings {
		if err := testkit.Ping(p.a.s, dst, 2*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	for i, want := range []int64{2 * pings, 2 * pings, pings} {
		if got := seen[i].Load(); got != want {
			t.Errorf("after the pull, wire %d: saw %d echo requests, want %d", i, got, want)
		}
	}
}

func BenchmarkTxBroadcast(b *testing.B) {
	l, _ := newSinkLagg(b, "broadcast", 4)
	_, lists := outbound(b, hotFlows(false, 64))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := l.WritePackets(lists[i&63]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
