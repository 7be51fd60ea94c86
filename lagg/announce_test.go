package lagg_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// annRig is a failover lagg over two wires on a fake clock whose announcer
// reports the (fake) time of each call.
type annRig struct {
	l     *lagg.Lagg
	clk   *testkit.FakeClock
	wires []*linkeptest.Wire
	calls chan time.Time
	start time.Time
}

func newAnnRig(t *testing.T, count int, interval time.Duration) *annRig {
	t.Helper()
	id := nextID()
	r := &annRig{start: time.Unix(1000, 0), calls: make(chan time.Time, 64)}
	r.clk = testkit.NewFakeClock(r.start)
	o := options(fmt.Sprintf("ann%d", id), "failover")
	o.Clock = r.clk
	o.AnnounceCount, o.AnnounceInterval = count, interval
	l, err := lagg.New(o)
	if err != nil {
		t.Fatal(err)
	}
	r.l = l
	t.Cleanup(l.Close)
	l.SetAnnouncer(func() { r.calls <- r.clk.Now() })
	l.Attach(&countingDispatcher{})
	for i := range 2 {
		w := newWire(id, i)
		t.Cleanup(w.B.Close)
		if err := l.AddPort(w.A, uint16(100+i)); err != nil {
			t.Fatal(err)
		}
		r.wires = append(r.wires, w)
	}
	return r
}

// expect waits for one announcement and checks it came at start+at.
func (r *annRig) expect(t *testing.T, at time.Duration, what string) {
	t.Helper()
	select {
	case got := <-r.calls:
		if d := got.Sub(r.start); d != at {
			t.Fatalf("%s: announcement at %v, want at %v", what, d, at)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no announcement (want one at %v)", what, at)
	}
}

// none checks that no announcement comes.
func (r *annRig) none(t *testing.T, what string) {
	t.Helper()
	select {
	case got := <-r.calls:
		t.Fatalf("%s: unexpected announcement at %v", what, got.Sub(r.start))
	case <-time.After(50 * time.Millisecond):
	}
}

// drain runs the clock until the link-up series that AddPort started is
// over, and returns the time then.
func (r *annRig) drain(t *testing.T, count int, interval time.Duration) time.Duration {
	t.Helper()
	for i := range count {
		if i > 0 {
			r.clk.Advance(interval)
		}
		r.expect(t, time.Duration(i)*interval, fmt.Sprintf("link-up announcement %d", i+1))
	}
	r.clk.Advance(interval)
	r.none(t, "after the link-up series")
	return time.Duration(count) * interval
}

func (r *annRig) setLink(t *testing.T, i int, up bool, wantTx int) {
	t.Helper()
	r.wires[i].SetLinkUp(up)
	want := r.wires[wantTx].A.Name()
	testkit.WaitFor(t, 5*time.Second, "tx port "+want, func() bool { return r.l.Status().TxPort == want })
}

// TestAnnounceRepeated (fake clock): a failover announces AnnounceCount
// times, AnnounceInterval apart, and then stops.
func TestAnnounceRepeated(t *testing.T) {
	const count, iv = 3, 250 * time.Millisecond
	r := newAnnRig(t, count, iv)
	now := r.drain(t, count, iv)
	r.setLink(t, 0, false, 1)
	r.expect(t, now, "failover announcement 1")
	for i := 1; i < count; i++ {
		r.clk.Advance(iv)
		r.expect(t, now+time.Duration(i)*iv, fmt.Sprintf("failover announcement %d", i+1))
	}
	r.clk.Advance(10 * iv)
	r.none(t, "after the failover series")
}

// TestAnnounceDefaults: unset, a lagg announces twice 100 ms apart.
func TestAnnounceDefaults(t *testing.T) {
	r := newAnnRig(t, 0, 0)
	if c := r.l.Config(); c.AnnounceCount != 2 || c.AnnounceInterval != 100*time.Millisecond {
		t.Fatalf("defaults: got count %d interval %v, want 2 and 100ms", c.AnnounceCount, c.AnnounceInterval)
	}
	r.drain(t, 2, 100*time.Millisecond)
}

// TestAnnounceRestart (fake clock): a new trigger in the middle of a series
// replaces it: the new series starts at once and runs its full count.
func TestAnnounceRestart(t *testing.T) {
	const count, iv = 3, 100 * time.Millisecond
	r := newAnnRig(t, count, iv)
	now := r.drain(t, count, iv)
	r.setLink(t, 0, false, 1)
	r.expect(t, now, "first series 1")
	r.clk.Advance(iv)
	r.expect(t, now+iv, "first series 2")
	now += iv
	r.setLink(t, 0, true, 0) // pre-emption back to port 0: a new failover
	r.expect(t, now, "second series 1")
	for i := 1; i < count; i++ {
		r.clk.Advance(iv)
		r.expect(t, now+time.Duration(i)*iv, fmt.Sprintf("second series %d", i+1))
	}
	r.clk.Advance(10 * iv)
	r.none(t, "after the second series")
}

// TestAnnounceStopsOnClose: Close cancels a running series' timer.
func TestAnnounceStopsOnClose(t *testing.T) {
	const count, iv = 5, 100 * time.Millisecond
	r := newAnnRig(t, count, iv)
	r.expect(t, 0, "link-up announcement 1")
	if n := r.clk.Pending(); n == 0 {
		t.Fatal("no repetition pending after the first announcement")
	}
	r.l.Close()
	if n := r.clk.Pending(); n != 0 {
		t.Errorf("timers pending after Close: got %d, want 0", n)
	}
	r.clk.Advance(10 * iv)
	r.none(t, "after Close")
}

// TestAnnounceConfig: the settings are validated, and changing only them
// neither announces nor touches the protocol.
func TestAnnounceConfig(t *testing.T) {
	r := newAnnRig(t, 1, time.Second)
	r.expect(t, 0, "link-up announcement")
	for _, tc := range []struct {
		name     string
		count    int
		interval time.Duration
		err      string
	}{
		{"count 256", 256, time.Second, "announce count 256 out of range 1..255"},
		{"count -1", -1, time.Second, "announce count -1 out of range"},
		{"interval negative", 1, -time.Second, "announce interval -1s out of range"},
		{"interval too short", 1, time.Microsecond, "announce interval 1µs out of range 1ms..1m0s"},
		{"interval too long", 1, time.Hour, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.l.Update(func(c *lagg.Config) { c.AnnounceCount, c.AnnounceInterval = tc.count, tc.interval })
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("got %v, want an error with %q", err, tc.err)
			}
		})
	}
	failovers := r.l.Status().Failovers
	if err := r.l.Update(func(c *lagg.Config) { c.AnnounceCount, c.AnnounceInterval = 255, time.Minute }); err != nil {
		t.Fatal(err)
	}
	if c := r.l.Config(); c.AnnounceCount != 255 || c.AnnounceInterval != time.Minute {
		t.Errorf("after Update: got count %d interval %v, want 255 and 1m", c.AnnounceCount, c.AnnounceInterval)
	}
	r.none(t, "after changing only the announcement settings")
	if got := r.l.Status().Failovers; got != failovers {
		t.Errorf("failovers: got %d, want %d", got, failovers)
	}
}
