package lacp_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

func TestNegotiationFast(t *testing.T) {
	for _, tc := range []struct {
		ports   int
		latency time.Duration
	}{{1, 0}, {2, 0}, {4, 0}, {2, 5 * time.Millisecond}, {4, 20 * time.Millisecond}} {
		n := tc.ports
		t.Run(fmt.Sprintf("%dports/%v", n, tc.latency), func(t *testing.T) {
			h := newHarness(t)
			h.latency = tc.latency
			a := h.node("a", 1, nil)
			b := h.node("b", 2, nil)
			h.pair(a, b, n)
			took, ok := h.runUntil(time.Second, func() bool {
				return a.distributing(ids(n)...) && b.distributing(ids(n)...)
			})
			if !ok {
				t.Fatalf("not all %d ports distributing after 1s: a=%+v", n, a.e.Status().Ports)
			}
			t.Logf("%d ports distributing after %v", n, took)
			h.run(2 * time.Second) // let the rate-limited last PDUs out
			st := a.e.Status()
			if !st.Up || st.Distributing != n || st.Active == 0 {
				t.Errorf("status: got up=%v distributing=%d active=%d, want true %d non-zero", st.Up, st.Distributing, st.Active, n)
			}
			if want := b.e.Status().Actor; st.Partner != want {
				t.Errorf("partner: got %+v, want %+v", st.Partner, want)
			}
			const want = lacp.StateActivity | lacp.StateTimeout | lacp.StateAggregation |
				lacp.StateSync | lacp.StateCollecting | lacp.StateDistributing
			for _, ps := range st.Ports {
				if ps.Actor.State != want || ps.Partner.State != want {
					t.Errorf("port %d: got actor %v partner %v, want %v", ps.ID, ps.Actor.State, ps.Partner.State, want)
				}
				if ps.Mux != "DISTRIBUTING" || ps.Rx != "CURRENT" || ps.Selected != "selected" {
					t.Errorf("port %d: got mux %s rx %s sel %s", ps.ID, ps.Mux, ps.Rx, ps.Selected)
				}
			}
		})
	}
}

func fast(c *lacp.Config) { c.FastRate = true }
func slow(c *lacp.Config) { c.FastRate = false }

// TestPeriodicRate checks that our periodic rate follows the partner's
// timeout bit, not our own (NetBSD's bug).
func TestPeriodicRate(t *testing.T) {
	for _, tc := range []struct {
		name           string
		actor, partner func(*lacp.Config)
		min, max       int // our LACPDUs in 120 s
	}{
		{"fast partner, slow actor", slow, fast, 119, 121},
		{"slow partner, fast actor", fast, slow, 4, 5},
		{"both slow", slow, slow, 4, 5},
		{"both fast", fast, fast, 119, 121},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, tc.actor)
			b := h.node("b", 2, tc.partner)
			h.pair(a, b, 2)
			if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2) }); !ok {
				t.Fatal("did not negotiate")
			}
			h.run(10 * time.Second)
			from := h.now
			h.run(120 * time.Second)
			for _, p := range ids(2) {
				if got := len(a.lacpdus(p, from, h.now)); got < tc.min || got > tc.max {
					t.Errorf("port %d: got %d LACPDUs in 120s, want %d..%d", p, got, tc.min, tc.max)
				}
			}
			if !a.distributing(1, 2) || !b.distributing(1, 2) {
				t.Errorf("lost distribution during steady state")
			}
		})
	}
}

// TestSilentLoss cuts PDUs with carrier up and checks when distribution
// stops: after the partner's last PDU plus our current_while.
func TestSilentLoss(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cfg      func(*lacp.Config)
		dropA    bool // also drop a's frames (else only b->a is cut)
		min, max time.Duration
	}{
		{"fast both ways", fast, true, 2 * time.Second, 3 * time.Second},
		{"fast b to a only", fast, false, 2 * time.Second, 3 * time.Second},
		{"slow both ways", slow, true, 60 * time.Second, 90 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, tc.cfg)
			b := h.node("b", 2, tc.cfg)
			ls := h.pair(a, b, 2)
			h.run(95*time.Second + 400*time.Millisecond) // cut between two PDUs
			if !a.distributing(1, 2) || !b.distributing(1, 2) {
				t.Fatal("not negotiated")
			}
			gen := a.e.Generation()
			ls[0].drop[1] = true
			ls[0].drop[0] = tc.dropA
			took, ok := h.runUntil(100*time.Second, func() bool {
				ps := a.port(t, 1)
				return !ps.Distributing && !ps.Collecting
			})
			if !ok || took <= tc.min || took > tc.max {
				t.Fatalf("a stopped distributing after %v (ok=%v), want in (%v, %v]", took, ok, tc.min, tc.max)
			}
			t.Logf("stopped distributing %v after the cut", took)
			if ps := a.port(t, 1); ps.Rx != "EXPIRED" {
				t.Errorf("rx: got %s, want EXPIRED", ps.Rx)
			}
			if a.e.Generation() == gen {
				t.Errorf("generation did not change")
			}
			if !a.distributing(2) {
				t.Errorf("port 2 stopped distributing")
			}
			// b hears a's out-of-sync PDUs (or times out itself) and stops too.
			if _, ok := h.runUntil(tc.max, func() bool { return !b.port(t, 1).Distributing }); !ok {
				t.Errorf("b still distributing on the cut link")
			}
			ls[0].drop = [2]bool{}
			if _, ok := h.runUntil(tc.max+time.Second, func() bool { return a.distributing(1) && b.distributing(1) }); !ok {
				t.Errorf("did not recover after the cut was fixed")
			}
		})
	}
}

func TestLinkDownImmediate(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, nil)
	b := h.node("b", 2, nil)
	ls := h.pair(a, b, 2)
	h.run(5 * time.Second)
	gen := a.e.Generation()
	// Only a's end is told, and the clock does not move.
	if err := a.e.SetPortLink(1, false, 10000, h.now); err != nil {
		t.Fatal(err)
	}
	ps := a.port(t, 1)
	if ps.Distributing || ps.Collecting || ps.Selected != "unselected" || ps.Rx != "PORT_DISABLED" || ps.Mux != "DETACHED" {
		t.Errorf("got dist=%v coll=%v sel=%s rx=%s mux=%s, want false false unselected PORT_DISABLED DETACHED",
			ps.Distributing, ps.Collecting, ps.Selected, ps.Rx, ps.Mux)
	}
	if got := a.e.Generation(); got <= gen {
		t.Errorf("generation: got %d, want > %d", got, gen)
	}
	if st := a.e.Status(); st.Distributing != 1 || !st.Up {
		t.Errorf("status: got distributing=%d up=%v, want 1 true", st.Distributing, st.Up)
	}
	ls[0].up = false
	h.setLink(ls[0], true)
	if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2) && b.distributing(1, 2) }); !ok {
		t.Errorf("port 1 did not come back")
	}
}

// TestMaxPortsPriority is NetBSD's ATF lagg_lacp_portpri scenario.
func TestMaxPortsPriority(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, func(c *lacp.Config) { c.MaxPorts = 2 })
	b := h.node("b", 2, nil)
	var ls []*link
	for i, prio := range []uint16{1000, 2000, 3000} {
		p := lacp.PortID(i + 1)
		ls = append(ls, h.connect(a, p, lacp.PortConfig{Priority: prio}, b, p, lacp.PortConfig{Priority: lacp.DefaultPortPriority}))
	}
	h.run(3 * time.Second)
	for _, tc := range []struct {
		p          lacp.PortID
		sel        string
		dist, stby bool
	}{{1, "selected", true, false}, {2, "selected", true, false}, {3, "standby", false, true}} {
		ps := a.port(t, tc.p)
		if ps.Selected != tc.sel || ps.Distributing != tc.dist || ps.Standby != tc.stby {
			t.Errorf("a port %d: got sel=%s dist=%v standby=%v, want %s %v %v", tc.p, ps.Selected, ps.Distributing, ps.Standby, tc.sel, tc.dist, tc.stby)
		}
	}
	if ps := b.port(t, 3); ps.Distributing || ps.Collecting {
		t.Errorf("b port 3: got coll=%v dist=%v, want false false (a is not in sync)", ps.Collecting, ps.Distributing)
	}
	h.setLink(ls[0], false)
	took, ok := h.runUntil(time.Second, func() bool { return a.distributing(2, 3) && b.distributing(2, 3) })
	if !ok {
		t.Fatalf("port 3 did not take over: %+v", a.port(t, 3))
	}
	t.Logf("standby took over after %v", took)
	h.setLink(ls[0], true)
	if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2) && a.port(t, 3).Standby }); !ok {
		t.Errorf("port 1 did not pre-empt port 3")
	}
}

func TestMultiSpeed(t *testing.T) {
	for _, tc := range []struct {
		name     string
		multi    bool
		prio     [3]uint16
		speed    [3]uint64
		wantDist [3]bool
	}{
		{"on", true, [3]uint16{1, 2, 3}, [3]uint64{10000, 10000, 1000}, [3]bool{true, true, true}},
		{"off, slow port last", false, [3]uint16{1, 2, 3}, [3]uint64{10000, 10000, 1000}, [3]bool{true, true, false}},
		{"off, best port slow", false, [3]uint16{3, 2, 1}, [3]uint64{10000, 10000, 1000}, [3]bool{false, false, true}},
		{"off, equal prio", false, [3]uint16{5, 5, 5}, [3]uint64{1000, 10000, 10000}, [3]bool{false, true, true}},
		{"off, unknown speeds", false, [3]uint16{5, 5, 5}, [3]uint64{0, 0, 0}, [3]bool{true, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, func(c *lacp.Config) { c.MultiSpeed = tc.multi })
			b := h.node("b", 2, nil)
			for i := range 3 {
				p := lacp.PortID(i + 1)
				h.connect(a, p, lacp.PortConfig{Priority: tc.prio[i], SpeedMbps: tc.speed[i]},
					b, p, lacp.PortConfig{Priority: 1, SpeedMbps: tc.speed[i]})
			}
			h.run(3 * time.Second)
			for i := range 3 {
				ps := a.port(t, lacp.PortID(i+1))
				if ps.Distributing != tc.wantDist[i] || ps.Standby == tc.wantDist[i] {
					t.Errorf("port %d: got dist=%v standby=%v, want dist=%v", i+1, ps.Distributing, ps.Standby, tc.wantDist[i])
				}
			}
		})
	}
}

// TestSelectPolicy: c's 2×10G links come up first, then b's 3×1G links;
// b has the better system priority, which no policy heeds (NetBSD's rule,
// dropped: a partner must not take the lagg by what it announces). Stable
// keeps c, bandwidth keeps c (20G against 3G), count moves to b (3 ports
// against 2). Once c's links go, b is active under every policy; when they
// come back, only bandwidth moves back to c.
func TestSelectPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy      lacp.SelectPolicy
		first, back string // active partner after b came, after c came back
	}{
		{lacp.SelectStable, "c", "b"},
		{lacp.SelectBandwidth, "c", "c"},
		{lacp.SelectCount, "b", "b"},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, func(c *lacp.Config) { c.Select = tc.policy })
			b := h.node("b", 2, func(c *lacp.Config) { c.SystemPriority = 100 })
			c := h.node("c", 3, func(c *lacp.Config) { c.SystemPriority = 200 })
			nodes := map[string]*node{"b": b, "c": c}
			ports := map[string][]lacp.PortID{"b": {1, 2, 3}, "c": {4, 5}}
			check := func(when, want string) {
				t.Helper()
				other := map[string]string{"b": "c", "c": "b"}[want]
				if _, ok := h.runUntil(time.Second, func() bool {
					return a.distributing(ports[want]...) && nodes[want].distributing(ids(len(ports[want]))...)
				}); !ok {
					t.Fatalf("%s: %s's links not distributing: %+v", when, want, a.e.Status().Ports)
				}
				if got, want := a.e.Status().Partner, nodes[want].e.Status().Actor; got != want {
					t.Errorf("%s: active partner %+v, want %+v", when, got, want)
				}
				for _, p := range ports[other] {
					if ps, ok := a.e.Port(p); ok && (ps.Distributing || ps.Collecting) {
						t.Errorf("%s: port %d of the inactive aggregator carries traffic (mux %s)", when, p, ps.Mux)
					}
				}
			}
			g10 := lacp.PortConfig{Priority: 1, SpeedMbps: 10000}
			g1 := lacp.PortConfig{Priority: 1, SpeedMbps: 1000}
			lc := []*link{h.connect(a, 4, g10, c, 1, g10), h.connect(a, 5, g10, c, 2, g10)}
			check("c alone", "c")
			for i, p := range ports["b"] {
				h.connect(a, p, g1, b, lacp.PortID(i+1), g1)
			}
			h.run(2 * time.Second)
			check("b came", tc.first)
			if st := a.e.Status(); !st.PartnerMismatch || st.PartnerSystems != 2 || st.Select != tc.policy.String() {
				t.Errorf("alarm: got mismatch %v with %d partner systems, select %q; want true, 2, %q", st.PartnerMismatch, st.PartnerSystems, st.Select, tc.policy)
			}
			for _, l := range lc {
				h.setLink(l, false)
			}
			check("c's links down", "b")
			if st := a.e.Status(); st.PartnerMismatch || st.PartnerSystems != 1 {
				t.Errorf("alarm with c gone: got %v, %d partner systems; want false, 1", st.PartnerMismatch, st.PartnerSystems)
			}
			for _, l := range lc {
				h.setLink(l, true)
			}
			h.run(2 * time.Second)
			check("c came back", tc.back)
			if got := a.e.Status().PartnerMismatches; got != 2 {
				t.Errorf("PartnerMismatches: got %d, want 2 (raised twice)", got)
			}
		})
	}
}

func TestActivePassive(t *testing.T) {
	passive := func(c *lacp.Config) { c.Active = false }
	for _, tc := range []struct {
		name  string
		a, b  func(*lacp.Config)
		agg   bool
		quiet bool // no LACPDU at all
	}{
		{"active-active", nil, nil, true, false},
		{"active-passive", nil, passive, true, false},
		{"passive-active", passive, nil, true, false},
		{"passive-passive", passive, passive, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, tc.a)
			b := h.node("b", 2, tc.b)
			h.pair(a, b, 2)
			_, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2) && b.distributing(1, 2) })
			if tc.agg != ok {
				t.Fatalf("aggregated: got %v, want %v", ok, tc.agg)
			}
			h.run(100 * time.Second)
			if got := a.distributing(1, 2) && b.distributing(1, 2); got != tc.agg {
				t.Errorf("aggregated after 100s: got %v, want %v", got, tc.agg)
			}
			n := len(a.lacpdus(1, t0, h.now)) + len(b.lacpdus(1, t0, h.now))
			if (n == 0) != tc.quiet {
				t.Errorf("got %d LACPDUs, want quiet=%v", n, tc.quiet)
			}
		})
	}
}

func TestMinPorts(t *testing.T) {
	for _, tc := range []struct {
		min          int
		downs        int
		wantUp       bool
		wantDistribs int
	}{
		{1, 0, true, 3}, {1, 2, true, 1}, {2, 1, true, 2}, {2, 2, false, 1}, {3, 1, false, 2},
	} {
		t.Run(fmt.Sprintf("min%d/down%d", tc.min, tc.downs), func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, func(c *lacp.Config) { c.MinPorts = tc.min })
			b := h.node("b", 2, nil)
			ls := h.pair(a, b, 3)
			h.run(2 * time.Second)
			for _, l := range ls[:tc.downs] {
				h.setLink(l, false)
			}
			st := a.e.Status()
			if st.Up != tc.wantUp || st.Distributing != tc.wantDistribs {
				t.Errorf("got up=%v distributing=%d, want %v %d", st.Up, st.Distributing, tc.wantUp, tc.wantDistribs)
			}
		})
	}
}

func TestFallback(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fallback bool
	}{{"on", true}, {"off", false}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, func(c *lacp.Config) { c.Fallback = tc.fallback })
			h.addPort(a, 1, lacp.PortConfig{Priority: 200})
			h.addPort(a, 2, lacp.PortConfig{Priority: 100})
			h.addPort(a, 3, lacp.PortConfig{Priority: 100})
			h.run(2 * time.Second) // still waiting for partners: no fallback yet
			if st := a.e.Status(); st.Fallback || st.Up {
				t.Fatalf("at 2s: got fallback=%v up=%v, want false false", st.Fallback, st.Up)
			}
			h.run(2 * time.Second) // all DEFAULTED now
			st := a.e.Status()
			if st.Fallback != tc.fallback || st.Up != tc.fallback {
				t.Fatalf("at 4s: got fallback=%v up=%v, want %v", st.Fallback, st.Up, tc.fallback)
			}
			if best, ok := a.e.FallbackPort(); ok != tc.fallback || tc.fallback && (best != 2 || st.FallbackPort != 2) {
				t.Errorf("fallback port: got %d (%v), status %d; want 2 (the best: priority, then ID)", best, ok, st.FallbackPort)
			}
			var dist []lacp.PortID
			for _, ps := range st.Ports {
				if ps.Distributing {
					dist = append(dist, ps.ID)
					if !ps.Collecting || !ps.Fallback || ps.Actor.State&lacp.StateSync != 0 {
						t.Errorf("port %d: got coll=%v fallback=%v actor=%v", ps.ID, ps.Collecting, ps.Fallback, ps.Actor.State)
					}
				}
			}
			if !tc.fallback {
				if len(dist) != 0 {
					t.Errorf("distributing without fallback: %v", dist)
				}
				return
			}
			// Every port with link up collects and may transmit: the lagg
			// sends where the partner's traffic arrives.
			if len(dist) != 3 {
				t.Fatalf("fallback ports: got %v, want [1 2 3]", dist)
			}
			// The best port's link goes: the next best is the best.
			gen := a.e.Generation()
			if err := a.e.SetPortLink(2, false, 0, h.now); err != nil {
				t.Fatal(err)
			}
			if best, _ := a.e.FallbackPort(); best != 3 || a.distributing(2) || !a.distributing(1, 3) || a.e.Generation() == gen {
				t.Errorf("fallback after port 2 went: best %d, port 2 distributing %v, want 3 and false at once", best, a.distributing(2))
			}
			// A partner appears on port 1: fallback ends at its first PDU.
			b := h.node("b", 2, nil)
			h.wire(a, 1, b, 1)
			h.addPort(b, 1, lacp.PortConfig{Priority: 1})
			h.drain()
			if st := a.e.Status(); st.Fallback || a.distributing(3) {
				t.Errorf("fallback still active after the partner's first PDU")
			}
			if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1) && b.distributing(1) }); !ok {
				t.Fatalf("LACP did not take over from fallback")
			}
			if ps := a.port(t, 1); ps.Fallback || ps.Mux != "DISTRIBUTING" {
				t.Errorf("port 1: got fallback=%v mux=%s, want false DISTRIBUTING", ps.Fallback, ps.Mux)
			}
		})
	}
}

func TestChurn(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, nil)
	b := h.node("b", 2, func(c *lacp.Config) { c.MaxPorts = 1 })
	h.pair(a, b, 2) // b keeps port 2 STANDBY: it never syncs there
	h.run(59 * time.Second)
	if ps := a.port(t, 2); ps.PartnerChurn != "CHURN_MONITOR" {
		t.Errorf("at 59s: got partner churn %s, want CHURN_MONITOR", ps.PartnerChurn)
	}
	h.run(2 * time.Second)
	for _, tc := range []struct {
		n                *node
		p                lacp.PortID
		actor, partner   string
		actorN, partnerN uint64
	}{
		{a, 1, "NO_CHURN", "NO_CHURN", 0, 0},
		{a, 2, "NO_CHURN", "CHURN", 0, 1}, // a is in sync, b is not
		{b, 2, "CHURN", "NO_CHURN", 1, 0},
	} {
		ps := tc.n.port(t, tc.p)
		if ps.ActorChurn != tc.actor || ps.PartnerChurn != tc.partner ||
			ps.Counters.ActorChurn != tc.actorN || ps.Counters.PartnerChurn != tc.partnerN {
			t.Errorf("%s port %d: got actor %s/%d partner %s/%d, want %s/%d %s/%d", tc.n.name, tc.p,
				ps.ActorChurn, ps.Counters.ActorChurn, ps.PartnerChurn, ps.Counters.PartnerChurn,
				tc.actor, tc.actorN, tc.partner, tc.partnerN)
		}
	}
}

// TestTxRateLimit hammers NTT and checks that no 1 s window holds more than
// 3 frames on a port, and that the last change still gets out.
func TestTxRateLimit(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, nil)
	b := h.node("b", 2, nil)
	h.pair(a, b, 2)
	h.run(2 * time.Second)
	from := h.now
	prio := uint16(100)
	for i := range 100 { // every 50 ms for 5 s
		prio = uint16(100 + i%2)
		if err := a.e.SetPortPriority(1, prio, h.now); err != nil {
			t.Fatal(err)
		}
		h.drain()
		h.run(50 * time.Millisecond)
	}
	h.run(2 * time.Second)
	var ts []time.Time
	for _, r := range a.tx[1] {
		if !r.at.Before(from) {
			ts = append(ts, r.at)
		}
	}
	if len(ts) < 15 {
		t.Fatalf("got %d frames in 7s, want >= 15 (NTT was not hammered)", len(ts))
	}
	for i := 3; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-3]); d < time.Second {
			t.Fatalf("frames %d..%d within %v, want 4 frames to span >= 1s", i-3, i, d)
		}
	}
	if got := b.port(t, 1).Partner.PortPriority; got != prio {
		t.Errorf("b's view of a's port priority: got %d, want %d", got, prio)
	}
}

// markerFrame builds a Marker Information frame from a partner.
func markerFrame(tid uint32) []byte {
	m := lacp.MarkerPDU{RequesterPort: 7, RequesterSystem: [6]byte{0x02, 9, 9, 9, 9, 9}, TransactionID: tid}
	return m.AppendFrame(nil, [6]byte{0x02, 9, 9, 9, 9, 0x10})
}

func TestMarkerResponse(t *testing.T) {
	h := newHarness(t)
	// Passive and alone: the port sends no LACPDUs, only Marker Responses.
	a := h.node("a", 1, func(c *lacp.Config) { c.Active = false })
	h.addPort(a, 1, lacp.PortConfig{})
	a.e.Receive(1, markerFrame(0xdeadbeef), h.now)
	if len(a.tx[1]) != 1 {
		t.Fatalf("got %d frames, want 1 Marker Response", len(a.tx[1]))
	}
	f := a.tx[1][0].frame
	m, err := lacp.DecodeMarker(f)
	if err != nil {
		t.Fatalf("DecodeMarker(response): %v", err)
	}
	want := lacp.MarkerPDU{Response: true, RequesterPort: 7, RequesterSystem: [6]byte{0x02, 9, 9, 9, 9, 9}, TransactionID: 0xdeadbeef}
	if m != want {
		t.Errorf("response: got %+v, want %+v", m, want)
	}
	if src := [6]byte(f[6:12]); src != portMAC(a, 1) || [6]byte(f[0:6]) != [6]byte{1, 0x80, 0xc2, 0, 0, 2} || len(f) != 124 {
		t.Errorf("header: got dst %x src %x len %d", f[0:6], f[6:12], len(f))
	}
	// A flood at one instant: 10 per second go out (the Slow Protocols
	// limit, the first response included), 4 wait, the rest drop.
	for i := range 20 {
		a.e.Receive(1, markerFrame(uint32(i)), h.now)
	}
	c := a.port(t, 1).Counters
	if len(a.tx[1]) != 10 || c.MarkerDropped != 7 || c.MarkerRx != 21 {
		t.Errorf("after flood: got %d sent, %d dropped, %d rx, want 10 7 21", len(a.tx[1]), c.MarkerDropped, c.MarkerRx)
	}
	h.run(3 * time.Second)
	if got := a.port(t, 1).Counters.MarkerResponseTx; got != 14 {
		t.Errorf("responses after 3s: got %d, want 14", got)
	}
	var last uint32
	if m, err := lacp.DecodeMarker(a.tx[1][len(a.tx[1])-1].frame); err == nil {
		last = m.TransactionID
	}
	if last != 12 {
		t.Errorf("last transaction answered: got %d, want 12 (FIFO, later ones dropped)", last)
	}
}

func TestAggregateWait(t *testing.T) {
	wait := func(d time.Duration) func(*lacp.Config) {
		return func(c *lacp.Config) { c.AggregateWait = d }
	}
	for _, tc := range []struct {
		name     string
		wait     time.Duration
		silent   bool // a third port with link up but no partner
		min, max time.Duration
	}{
		{"no wait", 0, true, 0, 0},
		// Early exit, but ports that waited spent an out-of-sync LACPDU, so
		// the last exchange can hit the 3 per second limit.
		{"wait, all ports partnered", 2 * time.Second, false, 0, time.Second},
		{"wait, one port silent", 2 * time.Second, true, 2 * time.Second, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			a := h.node("a", 1, wait(tc.wait))
			b := h.node("b", 2, wait(tc.wait))
			h.pair(a, b, 2)
			if tc.silent {
				h.addPort(a, 3, lacp.PortConfig{})
			}
			took, ok := h.runUntil(5*time.Second, func() bool { return a.distributing(1, 2) && b.distributing(1, 2) })
			if !ok || took < tc.min || took > tc.max {
				t.Errorf("distributing after %v (ok=%v), want %v..%v", took, ok, tc.min, tc.max)
			}
		})
	}
}

func TestSetConfig(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, nil)
	b := h.node("b", 2, nil)
	h.pair(a, b, 3)
	h.run(2 * time.Second)
	cfg := a.e.Config()
	gen := a.e.Generation()
	cfg.MaxPorts = 1
	if err := a.e.SetConfig(cfg, h.now); err != nil {
		t.Fatal(err)
	}
	if st := a.e.Status(); st.Distributing != 1 || !a.port(t, 2).Standby || !a.port(t, 3).Standby || a.e.Generation() == gen {
		t.Errorf("MaxPorts 1: got distributing=%d standby=%v,%v", st.Distributing, a.port(t, 2).Standby, a.port(t, 3).Standby)
	}
	cfg.MaxPorts = 16
	cfg.SystemPriority = 10 // a new actor: everything renegotiates
	if err := a.e.SetConfig(cfg, h.now); err != nil {
		t.Fatal(err)
	}
	if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(1, 2, 3) && b.distributing(1, 2, 3) }); !ok {
		t.Fatalf("did not renegotiate")
	}
	if got := b.e.Status().Partner.SystemPriority; got != 10 {
		t.Errorf("b's partner priority: got %d, want 10", got)
	}
	bad := cfg
	bad.MaxPorts = 17
	if err := a.e.SetConfig(bad, h.now); !errors.Is(err, lacp.ErrConfig) || a.e.Config() != cfg {
		t.Errorf("bad SetConfig: got %v (config kept: %v), want ErrConfig and no change", err, a.e.Config() == cfg)
	}
}

func TestConfigErrors(t *testing.T) {
	mac := [6]byte{2, 0, 0, 0, 0, 1}
	for _, tc := range []struct {
		name string
		mod  func(*lacp.Config)
	}{
		{"zero mac", func(c *lacp.Config) { c.SystemMAC = [6]byte{} }},
		{"multicast mac", func(c *lacp.Config) { c.SystemMAC[0] = 1 }},
		{"maxports 0", func(c *lacp.Config) { c.MaxPorts = 0 }},
		{"maxports 17", func(c *lacp.Config) { c.MaxPorts = 17 }},
		{"minports 0", func(c *lacp.Config) { c.MinPorts = 0 }},
		{"minports > maxports", func(c *lacp.Config) { c.MaxPorts, c.MinPorts = 2, 3 }},
		{"negative wait", func(c *lacp.Config) { c.AggregateWait = -1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := lacp.DefaultConfig(mac, 1)
			tc.mod(&cfg)
			if _, err := lacp.NewEngine(cfg, outFunc(func(lacp.PortID, []byte) {}), t0); !errors.Is(err, lacp.ErrConfig) {
				t.Errorf("got %v, want ErrConfig", err)
			}
		})
	}
	e, err := lacp.NewEngine(lacp.DefaultConfig(mac, 1), outFunc(func(lacp.PortID, []byte) {}), t0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lacp.NewEngine(lacp.DefaultConfig(mac, 1), nil, t0); !errors.Is(err, lacp.ErrConfig) {
		t.Errorf("nil Output: got %v, want ErrConfig", err)
	}
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"add port 0", e.AddPort(0, mac, lacp.PortConfig{}, true, t0)},
		{"add port 1", e.AddPort(1, mac, lacp.PortConfig{}, true, t0)},
		{"add port 1 again", e.AddPort(1, mac, lacp.PortConfig{}, true, t0)},
		{"remove port 2", e.RemovePort(2, t0)},
		{"link port 2", e.SetPortLink(2, true, 0, t0)},
		{"priority port 2", e.SetPortPriority(2, 1, t0)},
	} {
		want := tc.name != "add port 1"
		if got := errors.Is(tc.err, lacp.ErrPort); got != want {
			t.Errorf("%s: got %v, want ErrPort=%v", tc.name, tc.err, want)
		}
	}
	e.Receive(9, markerFrame(1), t0)
	if got := e.Status().RxUnknownPort; got != 1 {
		t.Errorf("RxUnknownPort: got %d, want 1", got)
	}
	if err := e.RemovePort(1, t0); err != nil || len(e.Status().Ports) != 0 {
		t.Errorf("RemovePort(1): got %v, %d ports left", err, len(e.Status().Ports))
	}
}

// TestDeterministic replays one scenario twice and compares every frame.
func TestDeterministic(t *testing.T) {
	trace := func() []byte {
		h := newHarness(t)
		h.latency = 3 * time.Millisecond
		a := h.node("a", 1, nil)
		b := h.node("b", 2, func(c *lacp.Config) { c.MaxPorts = 2 })
		ls := h.pair(a, b, 4)
		h.run(5 * time.Second)
		h.setLink(ls[1], false)
		ls[2].drop[0] = true
		h.run(10 * time.Second)
		var out []byte
		for _, n := range []*node{a, b} {
			for _, p := range ids(4) {
				for _, r := range n.tx[p] {
					out = append(out, r.at.Format(time.RFC3339Nano)...)
					out = append(out, r.frame...)
				}
			}
		}
		return out
	}
	x, y := trace(), trace()
	if string(x) != string(y) || len(x) == 0 {
		t.Errorf("two runs differ (%d vs %d bytes)", len(x), len(y))
	}
}

// TestActiveTieKeepsCurrent: two partners with equal system priority; the
// active aggregator only moves when it loses its ports.
func TestActiveTieKeepsCurrent(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, nil)
	c := h.node("c", 3, nil) // higher MAC than b, same priority
	b := h.node("b", 2, nil)
	pc := lacp.PortConfig{Priority: 1}
	lc := h.connect(a, 1, pc, c, 1, pc)
	h.run(time.Second)
	h.connect(a, 2, pc, b, 1, pc)
	h.run(2 * time.Second)
	if want := c.e.Status().Actor; a.e.Status().Partner != want || !a.distributing(1) || a.distributing(2) {
		t.Fatalf("tie: got partner %+v, want the current one %+v", a.e.Status().Partner, want)
	}
	h.setLink(lc, false)
	if _, ok := h.runUntil(time.Second, func() bool { return a.distributing(2) }); !ok {
		t.Fatalf("b did not take over")
	}
	h.setLink(lc, true)
	h.run(2 * time.Second)
	if want := b.e.Status().Actor; a.e.Status().Partner != want || a.distributing(1) {
		t.Errorf("after c returned: got partner %+v, want b %+v kept", a.e.Status().Partner, want)
	}
}

// TestFastRateAtRuntime: asking for fast rate makes the partner speed up
// at once.
func TestFastRateAtRuntime(t *testing.T) {
	h := newHarness(t)
	a := h.node("a", 1, slow)
	b := h.node("b", 2, slow)
	h.pair(a, b, 1)
	h.run(100 * time.Second)
	from := h.now
	h.run(10 * time.Second)
	if got := len(b.lacpdus(1, from, h.now)); got > 1 {
		t.Fatalf("slow: got %d PDUs from b in 10s, want <= 1", got)
	}
	cfg := a.e.Config()
	cfg.FastRate = true
	if err := a.e.SetConfig(cfg, h.now); err != nil {
		t.Fatal(err)
	}
	from = h.now
	h.run(10 * time.Second)
	if got := len(b.lacpdus(1, from, h.now)); got < 10 {
		t.Errorf("fast: got %d PDUs from b in 10s, want >= 10", got)
	}
	if got := a.port(t, 1).Actor.State; got&lacp.StateTimeout == 0 {
		t.Errorf("actor state %v lacks TIMEOUT", got)
	}
}

// pduFrom builds a LACPDU from peer port pp with the given actor state.
func pduFrom(pp uint16, state lacp.State) []byte {
	p := lacp.LACPDU{Version: 1,
		Actor: lacp.Info{SystemPriority: 100, System: peerSys, Key: 7, PortPriority: 1, Port: pp, State: state}}
	return p.AppendFrame(nil, peerSys)
}

func TestIndividualPartner(t *testing.T) {
	e, err := lacp.NewEngine(lacp.DefaultConfig(ourSys, 1), outFunc(func(lacp.PortID, []byte) {}), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []lacp.PortID{1, 2} {
		if err := e.AddPort(p, [6]byte{}, lacp.PortConfig{}, true, t0); err != nil {
			t.Fatal(err)
		}
		// Individual (no AGGREGATION) and in sync.
		e.Receive(p, pduFrom(uint16(p), lacp.StateActivity|lacp.StateSync|lacp.StateCollecting), t0)
	}
	st := e.Status()
	if len(st.Aggregators) != 2 {
		t.Fatalf("got %d aggregators, want one per individual link: %+v", len(st.Aggregators), st.Aggregators)
	}
	if st.Distributing != 1 || !st.Ports[0].Distributing {
		t.Errorf("got %d distributing (port 1: %v), want only the first active", st.Distributing, st.Ports[0].Distributing)
	}
}

func TestPortMovedAndDisabledRx(t *testing.T) {
	e, err := lacp.NewEngine(lacp.DefaultConfig(ourSys, 1), outFunc(func(lacp.PortID, []byte) {}), t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []lacp.PortID{1, 2} {
		if err := e.AddPort(p, [6]byte{}, lacp.PortConfig{}, true, t0); err != nil {
			t.Fatal(err)
		}
	}
	e.Receive(1, pduFrom(5, 0x05), t0)
	if err := e.SetPortLink(1, false, 0, t0); err != nil {
		t.Fatal(err)
	}
	if got := e.Status().Ports[0].Partner.Port; got != 5 {
		t.Fatalf("disabled port forgot its partner: got port %d, want 5", got)
	}
	e.Receive(1, pduFrom(5, 0x05), t0)
	e.Receive(1, markerFrame(1), t0)
	if c := e.Status().Ports[0].Counters; c.DisabledRx != 2 || c.LACPDUsRx != 1 || c.MarkerRx != 0 {
		t.Errorf("down port counters: got %+v, want DisabledRx 2, LACPDUsRx 1", c)
	}
	e.Receive(2, pduFrom(5, 0x05), t0) // the partner port moved to port 2
	if got := e.Status().Ports[0].Partner; got != (lacp.Info{}) {
		t.Errorf("port 1 partner after the move: got %+v, want defaults", got)
	}
}
