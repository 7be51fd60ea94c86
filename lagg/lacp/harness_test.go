package lacp_test

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// t0 is the fake epoch of every test.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

type outFunc func(lacp.PortID, []byte)

func (f outFunc) SendPDU(p lacp.PortID, b []byte) { f(p, b) }

type txRecord struct {
	at      time.Time
	subtype byte
	frame   []byte
}

// node is one engine in the harness.
type node struct {
	name string
	e    *lacp.Engine
	tx   map[lacp.PortID][]txRecord
	ends map[lacp.PortID]end
}

type end struct {
	l    *link
	side int
}

// link is a cable between two ports, with a carrier and a silent-loss
// switch per direction.
type link struct {
	n     [2]*node
	p     [2]lacp.PortID
	speed [2]uint64
	up    bool
	drop  [2]bool // drop frames sent by side i
}

type inflight struct {
	at   time.Time
	to   *node
	port lacp.PortID
	b    []byte
}

// harness wires engines back to back with zero-latency cables and a fake
// clock that jumps from one engine deadline to the next.
type harness struct {
	t       testing.TB
	now     time.Time
	latency time.Duration // one-way, every cable
	nodes   []*node
	queue   []inflight
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, now: t0}
}

// node adds an engine with a fast-rate DefaultConfig, changed by mutate.
func (h *harness) node(name string, id byte, mutate func(*lacp.Config)) *node {
	h.t.Helper()
	cfg := lacp.DefaultConfig([6]byte{0x02, 0, 0, 0, 0, id}, uint16(id))
	cfg.FastRate = true
	if mutate != nil {
		mutate(&cfg)
	}
	n := &node{name: name, tx: map[lacp.PortID][]txRecord{}, ends: map[lacp.PortID]end{}}
	e, err := lacp.NewEngine(cfg, outFunc(func(p lacp.PortID, b []byte) { h.send(n, p, b) }), h.now)
	if err != nil {
		h.t.Fatalf("NewEngine(%s): %v", name, err)
	}
	n.e = e
	h.nodes = append(h.nodes, n)
	return n
}

func portMAC(n *node, p lacp.PortID) [6]byte {
	st := n.e.Status()
	mac := st.Actor.System
	mac[0] = 0x06 // locally administered, distinct from the system ID
	mac[4] = byte(p)
	return mac
}

// addPort adds a port with link up.
func (h *harness) addPort(n *node, p lacp.PortID, pc lacp.PortConfig) {
	h.t.Helper()
	if err := n.e.AddPort(p, portMAC(n, p), pc, true, h.now); err != nil {
		h.t.Fatalf("%s.AddPort(%d): %v", n.name, p, err)
	}
}

// wire cables two existing ports.
func (h *harness) wire(a *node, ap lacp.PortID, b *node, bp lacp.PortID) *link {
	l := &link{n: [2]*node{a, b}, p: [2]lacp.PortID{ap, bp}, up: true}
	a.ends[ap] = end{l, 0}
	b.ends[bp] = end{l, 1}
	return l
}

// connect adds a port on each side with link up and cables them. Frames
// stay queued until the clock runs, so several links come up together.
func (h *harness) connect(a *node, ap lacp.PortID, apc lacp.PortConfig, b *node, bp lacp.PortID, bpc lacp.PortConfig) *link {
	h.t.Helper()
	l := h.wire(a, ap, b, bp)
	l.speed = [2]uint64{apc.SpeedMbps, bpc.SpeedMbps}
	h.addPort(a, ap, apc)
	h.addPort(b, bp, bpc)
	return l
}

// pair connects n ports of a to ports of b with default port settings.
func (h *harness) pair(a, b *node, n int) []*link {
	var ls []*link
	for i := 1; i <= n; i++ {
		pc := lacp.PortConfig{Priority: lacp.DefaultPortPriority, SpeedMbps: 10000}
		ls = append(ls, h.connect(a, lacp.PortID(i), pc, b, lacp.PortID(i), pc))
	}
	return ls
}

func (h *harness) send(n *node, p lacp.PortID, b []byte) {
	var sub byte
	if len(b) > 14 {
		sub = b[14]
	}
	frame := append([]byte(nil), b...) // only valid during the call
	n.tx[p] = append(n.tx[p], txRecord{at: h.now, subtype: sub, frame: frame})
	e, ok := n.ends[p]
	if !ok || !e.l.up || e.l.drop[e.side] {
		return
	}
	o := 1 - e.side
	h.queue = append(h.queue, inflight{at: h.now.Add(h.latency), to: e.l.n[o], port: e.l.p[o], b: frame})
}

func (h *harness) drain() {
	h.t.Helper()
	for i := 0; len(h.queue) > 0 && !h.queue[0].at.After(h.now); i++ {
		if i > 100000 {
			h.t.Fatalf("frame storm at %v", h.now.Sub(t0))
		}
		f := h.queue[0]
		h.queue = h.queue[1:]
		f.to.e.Receive(f.port, f.b, h.now)
	}
}

func (h *harness) next() (time.Time, bool) {
	var t time.Time
	ok := false
	if len(h.queue) > 0 {
		t, ok = h.queue[0].at, true
	}
	for _, n := range h.nodes {
		if d, dok := n.e.NextDeadline(); dok && (!ok || d.Before(t)) {
			t, ok = d, true
		}
	}
	return t, ok
}

func (h *harness) advanceAll() {
	for _, n := range h.nodes {
		n.e.Advance(h.now)
	}
	h.drain()
}

// runUntil runs the clock until cond holds or max elapses and returns the
// elapsed time and whether cond held.
func (h *harness) runUntil(max time.Duration, cond func() bool) (time.Duration, bool) {
	h.t.Helper()
	start := h.now
	stop := start.Add(max)
	h.drain()
	for {
		if cond != nil && cond() {
			return h.now.Sub(start), true
		}
		d, ok := h.next()
		if !ok || d.After(stop) {
			h.now = stop
			h.advanceAll()
			if cond != nil && cond() {
				return h.now.Sub(start), true
			}
			return h.now.Sub(start), false
		}
		if d.After(h.now) {
			h.now = d
		}
		h.advanceAll()
	}
}

func (h *harness) run(d time.Duration) { h.runUntil(d, nil) }

// setLink changes the carrier of both ends at once.
func (h *harness) setLink(l *link, up bool) {
	h.t.Helper()
	l.up = up
	for i := range 2 {
		if err := l.n[i].e.SetPortLink(l.p[i], up, l.speed[i], h.now); err != nil {
			h.t.Fatalf("SetPortLink: %v", err)
		}
	}
	h.drain()
}

func (n *node) port(t testing.TB, p lacp.PortID) lacp.PortStatus {
	t.Helper()
	ps, ok := n.e.Port(p)
	if !ok {
		t.Fatalf("%s: no port %d", n.name, p)
	}
	return ps
}

// distributing reports whether every listed port of n distributes.
func (n *node) distributing(ports ...lacp.PortID) bool {
	for _, p := range ports {
		if ps, ok := n.e.Port(p); !ok || !ps.Distributing {
			return false
		}
	}
	return true
}

// lacpdus returns the times n sent LACPDUs on port p within [from, to).
func (n *node) lacpdus(p lacp.PortID, from, to time.Time) []time.Time {
	var ts []time.Time
	for _, r := range n.tx[p] {
		if r.subtype == lacp.SubtypeLACP && !r.at.Before(from) && r.at.Before(to) {
			ts = append(ts, r.at)
		}
	}
	return ts
}

func ids(n int) []lacp.PortID {
	var ps []lacp.PortID
	for i := 1; i <= n; i++ {
		ps = append(ps, lacp.PortID(i))
	}
	return ps
}
