package lagg_test

import (
	"fmt"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg"
)

// TestRoundRobinSpreadsFrames: consecutive frames, sent one by one or in
// batches, take turns over 2, 3 and 4 ports, stride frames each, so every
// port gets its share within one stride.
func TestRoundRobinSpreadsFrames(t *testing.T) {
	for _, n := range []int{2, 3, 4} {
		for _, stride := range []int{1, 3} {
			for _, batch := range []int{1, 16} {
				t.Run(fmt.Sprintf("ports=%d/stride=%d/batch=%d", n, stride, batch), func(t *testing.T) {
					l, sinks := newSinkLagg(t, "roundrobin", n)
					if err := l.Update(func(c *lagg.Config) { c.RoundRobin.Stride = stride }); err != nil {
						t.Fatal(err)
					}
					pkts, _ := outbound(t, hotFlows(false, 1)) // one flow: hashing would use one port
					const frames = 997
					sent := 0
					for sent < frames {
						var list stack.PacketBufferList
						for i := 0; i < batch && sent+i < frames; i++ {
							list.PushBack(pkts[0])
						}
						m, err := l.WritePackets(list)
						if err != nil || m != list.Len() {
							t.Fatalf("WritePackets: got %d, %v, want %d", m, err, list.Len())
						}
						sent += m
					}
					share := frames / n
					for _, s := range sinks {
						got := int(s.frames.Load())
						if got < share-stride || got > share+stride {
							t.Errorf("port %s: got %d frames, want %d ± %d", s.Name(), got, share, stride)
						}
					}
					if st := l.Status(); st.Proto != lagg.ProtoRoundRobin || !st.Up {
						t.Errorf("status: proto %s up %v, want roundrobin up", st.Proto, st.Up)
					}
					for _, ps := range l.Status().Ports {
						if ps.Flags&lagg.PortDistributing == 0 || ps.Flags&lagg.PortCollecting == 0 {
							t.Errorf("port %s flags %v: want collecting and distributing", ps.Name, ps.Flags)
						}
					}
				})
			}
		}
	}
}

// TestRoundRobinTransferSurvivesPullsAndRemoval: one TCP stream spread over
// three ports arrives intact through a link pull and a port removal.
func TestRoundRobinTransferSurvivesPullsAndRemoval(t *testing.T) {
	p := newPair(t, "roundrobin", 3, nil)
	const size = 64 << 20
	x := startTransfer(t, p.a, p.b, 9100, size)
	x.WaitReceived(t, size/4, time.Minute)
	for _, s := range p.a.l.Status().Ports {
		if s.Counters.TxFrames == 0 {
			t.Errorf("port %s sent nothing: one stream should use every port", s.Name)
		}
	}
	p.wires[1].SetLinkUp(false)
	x.WaitReceived(t, size/2, time.Minute)
	p.removeBoth(t, 2)
	x.WaitReceived(t, 3*size/4, time.Minute)
	p.wires[1].SetLinkUp(true)
	x.Wait(t, 2*time.Minute)
}

func TestRoundRobinTxAllocatesNothing(t *testing.T) {
	l, _ := newSinkLagg(t, "roundrobin", 4)
	pkts, lists := outbound(t, hotFlows(false, 16))
	var batch stack.PacketBufferList
	for _, pkt := range pkts {
		batch.PushBack(pkt)
	}
	if allocs := testing.AllocsPerRun(200, func() {
		for _, list := range lists {
			if _, err := l.WritePackets(list); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := l.WritePackets(batch); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("roundrobin WritePackets: %v allocations per run, want 0", allocs)
	}
}

func BenchmarkTxRoundRobin(b *testing.B) {
	l, _ := newSinkLagg(b, "roundrobin", 4)
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
