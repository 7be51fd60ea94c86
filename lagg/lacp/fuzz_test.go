package lacp_test

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// partnerPDU is what a well-behaved, fully synced partner would send to
// port p of e right now.
func partnerPDU(e *lacp.Engine, p lacp.PortID) []byte {
	ps, _ := e.Port(p)
	pdu := lacp.LACPDU{
		Version: 1,
		Actor:   lacp.Info{SystemPriority: 100, System: peerSys, Key: 7, PortPriority: 1, Port: uint16(p) + 10, State: 0x3f},
		Partner: ps.Actor,
	}
	return pdu.AppendFrame(nil, [6]byte{0x02, 9, 9, 9, 9, byte(p)})
}

// negotiated returns an engine whose ports 1 and 2 distribute to a
// simulated partner.
func negotiated(tb testing.TB) *lacp.Engine {
	tb.Helper()
	e, err := lacp.NewEngine(lacp.DefaultConfig(ourSys, 1), outFunc(func(lacp.PortID, []byte) {}), t0)
	if err != nil {
		tb.Fatal(err)
	}
	for _, p := range []lacp.PortID{1, 2} {
		if err := e.AddPort(p, [6]byte{}, lacp.PortConfig{}, true, t0); err != nil {
			tb.Fatal(err)
		}
	}
	for range 2 {
		for _, p := range []lacp.PortID{1, 2} {
			e.Receive(p, partnerPDU(e, p), t0)
		}
	}
	if st := e.Status(); st.Distributing != 2 {
		tb.Fatalf("setup: got %d distributing, want 2", st.Distributing)
	}
	return e
}

func FuzzReceive(f *testing.F) {
	f.Add(peerFrame(nil))
	f.Add(markerFrame(1))
	f.Add(unhex(f, ovsLACPDU))
	f.Fuzz(func(t *testing.T, frame []byte) {
		src := [6]byte{0x02, 1, 2, 3, 4, 5}
		if p, err := lacp.DecodeLACPDU(frame); err == nil {
			q, err := lacp.DecodeLACPDU(p.AppendFrame(nil, src))
			if err != nil || q != p {
				t.Fatalf("LACPDU round trip: got %+v, %v, want %+v", q, err, p)
			}
		}
		if m, err := lacp.DecodeMarker(frame); err == nil {
			n, err := lacp.DecodeMarker(m.AppendFrame(nil, src))
			if err != nil || n != m {
				t.Fatalf("Marker round trip: got %+v, %v, want %+v", n, err, m)
			}
		}

		e := negotiated(t)
		e.Receive(1, frame, t0.Add(time.Millisecond))
		e.Receive(2, frame, t0.Add(2*time.Millisecond))
		e.Receive(2, frame, t0.Add(3*time.Millisecond))
		e.Advance(t0.Add(200 * time.Second))
		st := e.Status()
		for i, ps := range st.Ports {
			c := ps.Counters
			// Every frame lands in exactly one receive counter.
			got := c.LACPDUsRx + c.MalformedRx + c.UnknownRx + c.LoopbackRx + c.MarkerRx + c.MarkerResponseRx + c.DisabledRx
			if want := uint64(1+i) + 2; got != want { // +2 setup PDUs
				t.Fatalf("port %d: %d frames counted, want %d: %+v", ps.ID, got, want, c)
			}
			if ps.Distributing && (!ps.Collecting || ps.Aggregator != st.Active) {
				t.Fatalf("port %d distributes outside the active aggregator: %+v", ps.ID, ps)
			}
		}
		if _, ok := e.NextDeadline(); !ok {
			t.Fatalf("no timer armed with links up")
		}
	})
}

func BenchmarkReceiveSteadyState(b *testing.B) {
	e := negotiated(b)
	frame := partnerPDU(e, 1)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond)
		e.Receive(1, frame, now)
	}
	if ps, _ := e.Port(1); !ps.Distributing || ps.Counters.MalformedRx != 0 {
		b.Fatalf("not steady: %+v", ps)
	}
}
