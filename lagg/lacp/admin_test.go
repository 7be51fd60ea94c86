package lacp_test

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// TestAdminDown: a port the operator disables leaves the aggregation on
// both ends within one LACPDU exchange, not a partner timeout, keeps
// exchanging LACPDUs, and comes back when enabled.
func TestAdminDown(t *testing.T) {
	for _, slow := range []bool{false, true} {
		h := newHarness(t)
		a := h.node("a", 1, func(c *lacp.Config) { c.FastRate = !slow })
		b := h.node("b", 2, func(c *lacp.Config) { c.FastRate = !slow })
		h.pair(a, b, 2)
		if _, ok := h.runUntil(10*time.Second, func() bool { return a.distributing(1, 2) && b.distributing(1, 2) }); !ok {
			t.Fatal("no aggregation to start from")
		}
		if err := a.e.SetPortAdminDown(1, true, h.now); err != nil {
			t.Fatal(err)
		}
		if ps := a.port(t, 1); ps.Distributing || ps.Collecting || ps.Selected != "unselected" {
			t.Errorf("slow=%v: a's port 1 at once: dist=%v coll=%v sel=%s, want out", slow, ps.Distributing, ps.Collecting, ps.Selected)
		}
		took, ok := h.runUntil(2*time.Second, func() bool {
			ps := b.port(t, 1)
			return !ps.Distributing && !ps.Collecting && b.distributing(2)
		})
		if !ok {
			t.Errorf("slow=%v: b still uses port 1 two seconds after a disabled its end", slow)
		}
		from := h.now
		h.run(5 * time.Second)
		if n := len(a.lacpdus(1, from, h.now)); n == 0 && !slow {
			t.Errorf("fast: no LACPDU on the disabled port in 5 s; it should keep talking")
		}
		if ps := a.port(t, 1); ps.Rx != "CURRENT" || ps.Distributing {
			t.Errorf("slow=%v: disabled port: rx=%s dist=%v, want CURRENT, not distributing", slow, ps.Rx, ps.Distributing)
		}
		if err := a.e.SetPortAdminDown(1, false, h.now); err != nil {
			t.Fatal(err)
		}
		if _, ok := h.runUntil(5*time.Second, func() bool { return a.distributing(1, 2) && b.distributing(1, 2) }); !ok {
			t.Errorf("slow=%v: port 1 did not come back once enabled", slow)
		}
		t.Logf("slow=%v: partner out %v after the disable", slow, took)
		if err := a.e.SetPortAdminDown(99, true, h.now); err == nil {
			t.Error("SetPortAdminDown of an unknown port: no error")
		}
	}
}
