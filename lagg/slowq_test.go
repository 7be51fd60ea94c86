package lagg_test

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// junkSlowFrames are malformed slow-protocol frames: a LACPDU of version
// 0, one with a broken TLV, one cut short, an illegal subtype, a Marker
// PDU with a bad TLV.
func junkSlowFrames() [][]byte {
	good := lacpduFrame("\x02\x00\x00\x00\x0e\x01")
	v0 := append([]byte(nil), good...)
	v0[header.EthernetMinimumSize+1] = 0
	tlv := append([]byte(nil), good...)
	tlv[header.EthernetMinimumSize+3] = 19
	short := append([]byte(nil), good[:header.EthernetMinimumSize+30]...)
	subtype := append([]byte(nil), good...)
	subtype[header.EthernetMinimumSize] = 0x42
	marker := append([]byte(nil), good...)
	marker[header.EthernetMinimumSize] = 2
	return [][]byte{v0, tlv, short, subtype, marker}
}

// TestSlowJunkDroppedAtOnce: malformed slow-protocol frames are counted as
// control-malformed where they arrive and never queued for the control
// goroutine (which would hand them to the protocol), without allocating;
// other slow protocols (OAM, subtype 3) count as control-frame.
func TestSlowJunkDroppedAtOnce(t *testing.T) {
	l, sinks := newSinkLagg(t, "lacp", 2)
	name := sinks[0].Name()
	shim := lagg.PortDispatcher(l, name)
	junk := junkSlowFrames()
	for _, f := range junk {
		pkt := rxPacket(t, f, false)
		shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	}
	oam := append([]byte(nil), junk[0]...)
	oam[header.EthernetMinimumSize], oam[header.EthernetMinimumSize+1] = 3, 1
	pkt := rxPacket(t, oam, false)
	shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	st := portStatus(t, l, name)
	if got := st.Counters.Drops["control-malformed"]; got != uint64(len(junk)) {
		t.Errorf("control-malformed drops: got %d, want %d (drops %v)", got, len(junk), st.Counters.Drops)
	}
	if got := st.Counters.Drops["control-frame"]; got != 1 {
		t.Errorf("control-frame drops (OAM): got %d, want 1 (drops %v)", got, st.Counters.Drops)
	}
	if st.LACP != nil {
		if c := st.LACP.Counters; c.MalformedRx+c.UnknownRx != 0 {
			t.Errorf("the LACP engine was handed %d malformed and %d unknown frames, want none", c.MalformedRx, c.UnknownRx)
		}
	}
	bad := rxPacket(t, junk[1], false)
	if allocs := testing.AllocsPerRun(1000, func() { shim.DeliverNetworkPacket(bad.NetworkProtocolNumber, bad) }); allocs != 0 {
		t.Errorf("dropping a malformed slow-protocol frame: %v allocations, want 0", allocs)
	}
}

// TestSlowJunkFloodKeepsAggregate (real time, fast rate): a flood of
// malformed slow-protocol frames into one port of an LACP pair, as fast as
// a goroutine can deliver them, for longer than the 3 s fast timeout,
// takes neither that port nor the other out of the aggregate; the junk is
// counted, and the flooded port keeps handling its partner's LACPDUs.
func TestSlowJunkFloodKeepsAggregate(t *testing.T) {
	p := lacpPair(t, 2, nil)
	testkit.WaitFor(t, 10*time.Second, "both sides distributing", func() bool {
		return distributing(p.a.l) == 2 && distributing(p.b.l) == 2
	})
	name := p.portA(0)
	shim := lagg.PortDispatcher(p.a.l, name)
	junk := junkSlowFrames()
	pkts := make([]*stack.PacketBuffer, 0, len(junk))
	for _, f := range junk[:2] { // the two a LACPDU decoder spends most on
		pkts = append(pkts, rxPacket(t, f, false))
	}
	lacpRx := func(i int) uint64 {
		ps := portStatus(t, p.a.l, p.portA(i))
		if ps.LACP == nil {
			return 0
		}
		return ps.LACP.Counters.LACPDUsRx
	}
	rx0, rx1 := lacpRx(0), lacpRx(1)
	const flood = 5 * time.Second
	var sent atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			for range 64 {
				pkt := pkts[i%len(pkts)]
				shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
			}
			sent.Add(64)
		}
	}()
	start := time.Now()
	var left []string
	for time.Since(start) < flood {
		time.Sleep(20 * time.Millisecond)
		if a, b := distributing(p.a.l), distributing(p.b.l); (a != 2 || b != 2) && len(left) < 5 {
			left = append(left, fmt.Sprintf("%v: A %d/2, B %d/2", time.Since(start).Round(time.Millisecond), a, b))
		}
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	st := portStatus(t, p.a.l, name)
	malformed := st.Counters.Drops["control-malformed"]
	got0, got1 := lacpRx(0)-rx0, lacpRx(1)-rx1
	t.Logf("measure: junk slow-protocol flood into %s for %v: %d frames (%.0f/s), %d counted control-malformed, %d control-queue-full; LACPDUs handled during the flood: flooded port %d, other port %d; stayed in the aggregate: %v",
		name, elapsed.Round(time.Millisecond), sent.Load(), float64(sent.Load())/elapsed.Seconds(), malformed,
		st.Counters.Drops["control-queue-full"], got0, got1, len(left) == 0)
	if len(left) > 0 {
		t.Errorf("ports left the aggregate during the flood: %v", left)
	}
	if malformed < sent.Load() {
		t.Errorf("control-malformed drops: got %d, want the %d junk frames", malformed, sent.Load())
	}
	if got0 < 4 || got1 < 4 {
		t.Errorf("LACPDUs handled during %v at the fast rate: flooded port %d, other %d; want >= 4 each (one a second)", flood, got0, got1)
	}
}

// TestSlowQueuesPerPortRoundRobin: frames queued on several ports are
// served in turn, LACPDUs before markers; a full LACPDU queue keeps the
// newest, a full marker queue the oldest.
func TestSlowQueuesPerPortRoundRobin(t *testing.T) {
	order := lagg.SlowServeOrder(func(q lagg.SlowQueueTester) {
		// Port 0 floods 10 LACPDUs and 3 markers; port 1 sends 1 LACPDU,
		// port 2 one marker.
		for i := range 10 {
			q.Push(0, false, byte(i))
		}
		for i := range 3 {
			q.Push(0, true, byte(100+i))
		}
		q.Push(1, false, 50)
		q.Push(2, true, 200)
	})
	// Port 0 keeps its 4 newest LACPDUs and its 2 first markers (the
	// third is dropped); the turn passes from port to port.
	want := []string{"0:L6", "1:L50", "0:L7", "0:L8", "0:L9", "2:M200", "0:M100", "0:M101"}
	if got := joinOrder(order); got != joinOrder(want) {
		t.Errorf("served: %s\nwant:   %s", got, joinOrder(want))
	}
}

func joinOrder(s []string) string { return strings.Join(s, " ") }
