package lacp_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// Tests of what a remote partner must not be able to do to the engine
// ("trust nothing from the wire").

// TestRogueLinkKeepsAggregate: a healthy 2-link aggregate with b; then a
// third link comes up to r, which announces system priority 1. Under every
// selection policy b keeps the lagg (r has fewer ports and less
// bandwidth), r's link never collects or distributes, r never sees our
// side in sync, and the mixed-partners alarm is raised, and cleared once
// r's link goes.
func TestRogueLinkKeepsAggregate(t *testing.T) {
	for _, policy := range []lacp.SelectPolicy{lacp.SelectStable, lacp.SelectBandwidth, lacp.SelectCount} {
		t.Run(policy.String(), func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, func(c *lacp.Config) { c.Select = policy })
			b := h.node("b", 2, nil)
			r := h.node("r", 3, func(c *lacp.Config) { c.SystemPriority = 1 })
			h.pair(a, b, 2)
			if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2) && b.distributing(1, 2) }); !ok {
				t.Fatal("a and b did not aggregate")
			}
			pc := lacp.PortConfig{Priority: lacp.DefaultPortPriority, SpeedMbps: 10000}
			rl := h.connect(a, 3, pc, r, 1, pc)
			gen := a.e.Generation()
			for end := h.now.Add(5 * time.Second); h.now.Before(end); {
				h.run(100 * time.Millisecond)
				if !a.distributing(1, 2) || !b.distributing(1, 2) {
					t.Fatalf("at %v after the rogue link: the aggregate with b stopped distributing: %+v", h.now.Sub(t0), a.e.Status().Ports)
				}
				if ps := a.port(t, 3); ps.Collecting || ps.Distributing {
					t.Fatalf("at %v: the rogue link carries traffic (mux %s)", h.now.Sub(t0), ps.Mux)
				}
			}
			st := a.e.Status()
			if st.Partner != b.e.Status().Actor {
				t.Errorf("active partner: got %+v, want b", st.Partner)
			}
			if !st.PartnerMismatch || st.PartnerSystems != 2 || st.PartnerMismatches != 1 {
				t.Errorf("alarm: got mismatch %v, %d systems, raised %d times; want true, 2, 1", st.PartnerMismatch, st.PartnerSystems, st.PartnerMismatches)
			}
			if al := a.e.Alarms(); al.PartnerSystems != 2 || al.Mismatches != 1 {
				t.Errorf("Alarms: got %+v", al)
			}
			if ps := r.port(t, 1); ps.Distributing || ps.Partner.State&lacp.StateSync != 0 {
				t.Errorf("r: distributing %v, sees a in sync %v; want neither", ps.Distributing, ps.Partner.State&lacp.StateSync != 0)
			}
			if a.e.Generation() == gen {
				t.Logf("generation unchanged by the rogue link (no data-path change)")
			}
			h.setLink(rl, false)
			if st := a.e.Status(); st.PartnerMismatch || st.PartnerSystems != 1 {
				t.Errorf("alarm after the rogue link went: got %v, %d systems", st.PartnerMismatch, st.PartnerSystems)
			}
		})
	}
}

// TestControllingSystemDecides (802.1AX-2014 6.6.1): two engines, both
// with max ports 1 and opposite port priorities. The system with the better
// System Identifier decides: both select its favourite link, exactly one
// link distributes, on both sides. Before, each side selected its own
// favourite and the two never agreed (no link distributed).
func TestControllingSystemDecides(t *testing.T) {
	for _, tc := range []struct {
		name       string
		aCfg, bCfg func(*lacp.Config)
		want       lacp.PortID // the link both must use
	}{
		// Equal priorities: a's MAC (…:01) is lower; a prefers link 1.
		{"a controls by MAC", nil, nil, 1},
		// b's system priority is better; b prefers link 2.
		{"b controls by priority", nil, func(c *lacp.Config) { c.SystemPriority = 100 }, 2},
		// a's priority is better although its MAC is not compared first.
		{"a controls by priority", func(c *lacp.Config) { c.SystemPriority = 100 }, func(c *lacp.Config) { c.SystemPriority = 200 }, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max1 := func(f func(*lacp.Config)) func(*lacp.Config) {
				return func(c *lacp.Config) {
					c.MaxPorts = 1
					if f != nil {
						f(c)
					}
				}
			}
			h := newHarness(t)
			a := h.node("a", 1, max1(tc.aCfg))
			b := h.node("b", 2, max1(tc.bCfg))
			// a prefers link 1, b prefers link 2.
			h.connect(a, 1, lacp.PortConfig{Priority: 100, SpeedMbps: 1000}, b, 1, lacp.PortConfig{Priority: 200, SpeedMbps: 1000})
			h.connect(a, 2, lacp.PortConfig{Priority: 200, SpeedMbps: 1000}, b, 2, lacp.PortConfig{Priority: 100, SpeedMbps: 1000})
			other := 3 - tc.want
			took, ok := h.runUntil(3*time.Second, func() bool { return a.distributing(tc.want) && b.distributing(tc.want) })
			if !ok {
				t.Fatalf("link %d not distributing on both sides: a %+v\nb %+v", tc.want, a.e.Status().Ports, b.e.Status().Ports)
			}
			t.Logf("link %d distributing on both sides after %v", tc.want, took)
			h.run(10 * time.Second)
			for _, n := range []*node{a, b} {
				if !n.distributing(tc.want) || n.distributing(other) {
					t.Errorf("%s after 10s: link %d distributing %v, link %d %v; want true, false", n.name, tc.want, n.distributing(tc.want), other, n.distributing(other))
				}
				if ps := n.port(t, other); !ps.Standby {
					t.Errorf("%s: link %d is %s, want standby", n.name, other, ps.Selected)
				}
				if st := n.e.Status(); st.Distributing != 1 || !st.Up {
					t.Errorf("%s: %d distributing, up %v; want 1, true", n.name, st.Distributing, st.Up)
				}
			}
		})
	}
}

// TestControllingSystemMaxPortsDiffer: a (controlling, max 2) and b (max
// 1) with 3 links; b takes a's best link, and only that link distributes.
func TestControllingSystemMaxPortsDiffer(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, func(c *lacp.Config) { c.MaxPorts = 2; c.SystemPriority = 10 })
	b := h.node("b", 2, func(c *lacp.Config) { c.MaxPorts = 1 })
	for i, prio := range [][2]uint16{{300, 1}, {100, 2}, {200, 3}} {
		p := lacp.PortID(i + 1)
		h.connect(a, p, lacp.PortConfig{Priority: prio[0]}, b, p, lacp.PortConfig{Priority: prio[1]})
	}
	h.run(5 * time.Second)
	for _, n := range []*node{a, b} {
		if !n.distributing(2) || n.distributing(1) || n.distributing(3) {
			t.Errorf("%s: got %+v, want only link 2 distributing (a's best)", n.name, n.e.Status().Ports)
		}
	}
}

// TestLoopedPorts: ports 1 and 2 of a fallback engine are cabled to each
// other; port 3 leads to a partner without LACP. 1 and 2 hear their own
// LACPDUs: they are marked looped, never collect, never fall back, and do
// not hold fallback up; port 3 falls back alone, 3 s after link up. Before,
// the looped ports defaulted like any silent port and port 1 (the best)
// became the fallback port, sending into the loop.
func TestLoopedPorts(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, func(c *lacp.Config) { c.Fallback = true })
	h.wire(a, 1, a, 2)
	h.addPort(a, 1, lacp.PortConfig{Priority: 1})
	h.addPort(a, 2, lacp.PortConfig{Priority: 1})
	h.addPort(a, 3, lacp.PortConfig{Priority: 2})
	h.run(2900 * time.Millisecond)
	if a.e.Status().Up {
		t.Fatalf("up at 2.9s, before port 3 defaulted")
	}
	h.run(200 * time.Millisecond)
	st := a.e.Status()
	if !st.Up || !st.Fallback || st.FallbackPort != 3 || st.LoopedPorts != 2 {
		t.Fatalf("at 3.1s: up %v fallback %v best %d looped %d; want true true 3 2", st.Up, st.Fallback, st.FallbackPort, st.LoopedPorts)
	}
	for _, p := range []lacp.PortID{1, 2} {
		ps := a.port(t, p)
		if !ps.Looped || ps.Collecting || ps.Distributing || ps.Fallback || ps.Counters.LoopbackRx == 0 || ps.Counters.Loops != 1 {
			t.Errorf("port %d: looped %v coll %v dist %v fallback %v loopback rx %d loops %d; want looped and idle",
				p, ps.Looped, ps.Collecting, ps.Distributing, ps.Fallback, ps.Counters.LoopbackRx, ps.Counters.Loops)
		}
	}
	if al := a.e.Alarms(); al.LoopedPorts != 2 || al.Loops != 2 {
		t.Errorf("Alarms: got %+v, want 2 looped ports, 2 loops", al)
	}
	// Minutes on: the loop is still known (defaulted, the looped ports hear
	// themselves every 30 s).
	h.run(5 * time.Minute)
	if st := a.e.Status(); st.LoopedPorts != 2 || st.FallbackPort != 3 || a.port(t, 1).Collecting {
		t.Errorf("after 5 min: %d looped, best %d, port 1 collecting %v", st.LoopedPorts, st.FallbackPort, a.port(t, 1).Collecting)
	}
	// Port 3 goes: nothing may carry traffic.
	if err := a.e.SetPortLink(3, false, 0, h.now); err != nil {
		t.Fatal(err)
	}
	h.run(10 * time.Second)
	if st := a.e.Status(); st.Up || st.Fallback {
		t.Errorf("only looped ports left: up %v fallback %v, want down", st.Up, st.Fallback)
	}
}

// TestLoopedOnly: an engine whose only two ports are cabled to each other
// never comes up, fallback or not.
func TestLoopedOnly(t *testing.T) {
	for _, fb := range []bool{true, false} {
		t.Run(fmt.Sprintf("fallback=%v", fb), func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, func(c *lacp.Config) { c.Fallback = fb })
			l := h.wire(a, 1, a, 2)
			h.addPort(a, 1, lacp.PortConfig{})
			h.addPort(a, 2, lacp.PortConfig{})
			for end := h.now.Add(2 * time.Minute); h.now.Before(end); {
				h.run(500 * time.Millisecond)
				if st := a.e.Status(); st.Up || st.Fallback || st.Distributing != 0 {
					t.Fatalf("at %v: up %v fallback %v distributing %d", h.now.Sub(t0), st.Up, st.Fallback, st.Distributing)
				}
			}
			if st := a.e.Status(); st.LoopedPorts != 2 {
				t.Errorf("looped ports: got %d, want 2", st.LoopedPorts)
			}
			// Unplug and plug: the loop is found again at once.
			h.setLink(l, false)
			if st := a.e.Status(); st.LoopedPorts != 0 {
				t.Errorf("link down: %d looped ports, want 0", st.LoopedPorts)
			}
			h.setLink(l, true)
			h.run(10 * time.Millisecond)
			if st := a.e.Status(); st.LoopedPorts != 2 {
				t.Errorf("link up again: %d looped ports, want 2", st.LoopedPorts)
			}
		})
	}
}

// slowFrames returns the times n sent any slow-protocol frame on port p.
func slowFrames(n *node, p lacp.PortID) []time.Time {
	var ts []time.Time
	for _, r := range n.tx[p] {
		ts = append(ts, r.at)
	}
	return ts
}

// maxInWindow returns the most times that fall in any window of length w.
func maxInWindow(ts []time.Time, w time.Duration) int {
	best := 0
	for i := range ts {
		n := 0
		for j := i; j < len(ts) && ts[j].Sub(ts[i]) < w; j++ {
			n++
		}
		best = max(best, n)
	}
	return best
}

func markerResponses(n *node, p lacp.PortID, from time.Time) (ts []time.Time) {
	for _, r := range n.tx[p] {
		if r.subtype == lacp.SubtypeMarker && !r.at.Before(from) {
			ts = append(ts, r.at)
		}
	}
	return ts
}

// TestMarkerSlowProtocolsLimit: Marker Responses fall under the Slow
// Protocols limit (10 frames per second per port, IEEE 802.3 Annex 57A),
// not LACP's 3 per second. On a negotiated port (sending LACPDUs every
// second): a burst of 10 Marker requests in 100 ms gets all 10 answered,
// none dropped; 20 requests in one second get at most 10 frames out in any
// second (LACPDUs included), the surplus waits (up to 4) or is dropped.
// Before, responses shared LACP's 3 per second and 3 of the 10 were dropped.
func TestMarkerSlowProtocolsLimit(t *testing.T) {
	setup := func(t *testing.T) (*harness, *node) {
		h := newHarness(t)
		a := h.node("a", 1, nil)
		b := h.node("b", 2, nil)
		h.pair(a, b, 1)
		h.run(10*time.Second + 500*time.Millisecond)
		if !a.distributing(1) {
			t.Fatal("not negotiated")
		}
		return h, a
	}
	t.Run("burst of 10 in 100ms", func(t *testing.T) {
		h, a := setup(t)
		from := h.now
		for i := range 10 {
			a.e.Receive(1, markerFrame(uint32(i)), h.now)
			h.run(10 * time.Millisecond)
		}
		h.run(time.Second)
		got := markerResponses(a, 1, from)
		c := a.port(t, 1).Counters
		if len(got) != 10 || c.MarkerDropped != 0 {
			t.Errorf("got %d responses, %d dropped; want 10, 0", len(got), c.MarkerDropped)
		}
		if len(got) > 0 {
			t.Logf("%d responses, the last %v after the first request", len(got), got[len(got)-1].Sub(from))
		}
		if n := maxInWindow(slowFrames(a, 1), time.Second); n > 10 {
			t.Errorf("%d slow-protocol frames within 1s, want <= 10", n)
		}
		if !a.distributing(1) {
			t.Errorf("LACP lost its link during the burst")
		}
	})
	t.Run("20 in one second", func(t *testing.T) {
		h, a := setup(t)
		from := h.now
		for i := range 20 {
			a.e.Receive(1, markerFrame(uint32(i)), h.now)
			h.run(50 * time.Millisecond)
		}
		inSecond := 0
		for _, at := range markerResponses(a, 1, from) {
			if at.Sub(from) < time.Second {
				inSecond++
			}
		}
		h.run(5 * time.Second)
		all := markerResponses(a, 1, from)
		c := a.port(t, 1).Counters
		t.Logf("responses: %d within the second, %d in all; %d dropped", inSecond, len(all), c.MarkerDropped)
		if inSecond > 10 || inSecond < 7 {
			t.Errorf("%d responses within the second, want 7..10 (10 a second, LACPDUs included)", inSecond)
		}
		if uint64(len(all))+c.MarkerDropped != 20 || len(all) > 14 {
			t.Errorf("%d answered + %d dropped, want 20 in all and at most 10+4 answered", len(all), c.MarkerDropped)
		}
		if n := maxInWindow(slowFrames(a, 1), time.Second); n > 10 {
			t.Errorf("%d slow-protocol frames within 1s, want <= 10", n)
		}
		if n := maxInWindow(a.lacpdus(1, t0, h.now), time.Second); n > 3 {
			t.Errorf("%d LACPDUs within 1s, want <= 3", n)
		}
		if !a.distributing(1) {
			t.Errorf("LACP lost its link during the flood")
		}
	})
}

// TestLoopedAfterPartner: a port distributing with a partner starts hearing
// our own LACPDUs (the partner reflects them, or the cabling changed
// without a carrier loss): the port is looped at once and leaves
// distribution; the other link carries on. Its stale partner information
// does not keep it selected.
func TestLoopedAfterPartner(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, nil)
	b := h.node("b", 2, nil)
	h.pair(a, b, 2)
	if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2) }); !ok {
		t.Fatal("not negotiated")
	}
	own := lacp.LACPDU{Version: 1, Actor: a.port(t, 1).Actor}
	a.e.Receive(1, own.AppendFrame(nil, portMAC(a, 1)), h.now)
	ps := a.port(t, 1)
	if !ps.Looped || ps.Distributing || ps.Collecting || ps.Selected != "unselected" {
		t.Errorf("port 1 after our own LACPDU: looped %v dist %v coll %v %s; want looped, idle, unselected", ps.Looped, ps.Distributing, ps.Collecting, ps.Selected)
	}
	if !a.distributing(2) || !a.e.Status().Up {
		t.Errorf("port 2 stopped distributing")
	}
}
