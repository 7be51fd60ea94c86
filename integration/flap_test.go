package integration

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// TestLinkFlap flaps the transmitting port of a 2-port failover lagg 200
// times (`ip link set down/up`, a few milliseconds apart) while verified
// streams run both ways. The streams end intact and keep moving after the
// flapping, the lagg is up on both ports again, and once the appliance and
// topology are gone this process has the goroutines and fds it started with.
func TestLinkFlap(t *testing.T) {
	const flaps = 200
	base := testkit.TakeBaseline()
	t.Run("flap", func(t *testing.T) {
		tp := newTopo(t, 2)
		ap := startAppliance(t, laggConfig(config.ProtoFailover, tp.ports...), appOptions{netns: tp.lag})
		pingOK(t, tp.host, 3)
		in := startTransfer(t, ap.a.Stack(), tp.host, kernelToUlagg, -1, 301)
		out := startTransfer(t, ap.a.Stack(), tp.host, ulaggToKernel, -1, 302)
		in.WaitReceived(t, 8<<20, 30*time.Second)
		out.WaitReceived(t, 8<<20, 30*time.Second)
		f0 := ap.l.Status().Failovers
		start := time.Now()
		jitter := func() { time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond) }
		for range flaps {
			if err := lab.Run("ip", "-n", tp.lag, "link", "set", tp.ports[0], "down"); err != nil {
				t.Fatal(err)
			}
			jitter()
			if err := lab.Run("ip", "-n", tp.lag, "link", "set", tp.ports[0], "up"); err != nil {
				t.Fatal(err)
			}
			jitter()
		}
		flapTime := time.Since(start)
		testkit.WaitFor(t, 10*time.Second, "both ports active and transmitting on "+tp.ports[0], func() bool {
			st := ap.l.Status()
			return st.Up && st.TxPort == tp.ports[0] && st.Port(tp.ports[0]).Active && st.Port(tp.ports[1]).Active
		})
		// Traffic flows again after the storm.
		inAt, outAt := in.Received(), out.Received()
		in.WaitReceived(t, inAt+16<<20, 30*time.Second)
		out.WaitReceived(t, outAt+16<<20, 30*time.Second)
		in.Stop()
		out.Stop()
		rin, rout := in.Wait(t, 60*time.Second), out.Wait(t, 60*time.Second)
		st := ap.l.Status()
		if got := ap.l.Ports(); !slices.Equal(got, tp.ports) {
			t.Errorf("ports after flapping %v, want %v", got, tp.ports)
		}
		pingOK(t, tp.host, 3)
		echoOK(t, tp.host, 256<<10)
		t.Logf("measure: flap %d× %s in %v: %d failovers, %d receive restarts; streams kernel→ulagg %d MB, ulagg→kernel %d MB, intact",
			flaps, tp.ports[0], flapTime.Round(time.Millisecond), st.Failovers-f0,
			ap.log.count("receive stopped, restarting it"), rin.Received/1e6, rout.Received/1e6)
		if st.Failovers-f0 < 2 {
			t.Errorf("only %d failovers during %d flaps of the transmitting port", st.Failovers-f0, flaps)
		}
	})
	err := base.Leaks(testkit.LeakGrace, 2, 1)
	g, fds := testkit.Counts()
	t.Logf("measure: flap leak check: goroutines %d→%d, fds %d→%d", base.NumGoroutine, g, base.NumFD, fds)
	if err != nil {
		t.Errorf("after the flap test: %v", err)
	}
}

// TestPortDeleted deletes port interfaces (`ip link del`) while verified
// streams run both ways: the port leaves the lagg's Ports(), traffic goes on
// over the others, the streams end intact and nothing panics.
func TestPortDeleted(t *testing.T) {
	for _, tc := range []struct {
		name   string
		proto  string
		ports  int
		delete []int // indexes into the topology's ports, in order
	}{
		{"failover_active_then_standby", config.ProtoFailover, 3, []int{0, 2}},
		{"loadbalance", config.ProtoLoadBalance, 2, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tp := newTopo(t, tc.ports)
			ap := startAppliance(t, laggConfig(tc.proto, tp.ports...), appOptions{netns: tp.lag})
			pingOK(t, tp.host, 3)
			in := startTransfer(t, ap.a.Stack(), tp.host, kernelToUlagg, -1, 401)
			out := startTransfer(t, ap.a.Stack(), tp.host, ulaggToKernel, -1, 402)
			in.WaitReceived(t, 16<<20, 30*time.Second)
			out.WaitReceived(t, 16<<20, 30*time.Second)
			left := slices.Clone(tp.ports)
			for _, i := range tc.delete {
				p := tp.ports[i]
				if err := lab.Run("ip", "-n", tp.lag, "link", "del", p); err != nil {
					t.Fatal(err)
				}
				left = slices.DeleteFunc(left, func(s string) bool { return s == p })
				start := time.Now()
				testkit.WaitFor(t, 5*time.Second, p+" gone from Ports()", func() bool { return !slices.Contains(ap.l.Ports(), p) })
				t.Logf("measure: port %s deleted: gone from Ports() %v after `ip link del` returned; ports now %s",
					p, time.Since(start).Round(time.Microsecond), strings.Join(ap.l.Ports(), ","))
				inAt, outAt := in.Received(), out.Received()
				in.WaitReceived(t, inAt+16<<20, 30*time.Second)
				out.WaitReceived(t, outAt+16<<20, 30*time.Second)
			}
			in.Stop()
			out.Stop()
			in.Wait(t, 60*time.Second)
			out.Wait(t, 60*time.Second)
			if got := ap.l.Ports(); !slices.Equal(got, left) {
				t.Errorf("ports %v, want %v", got, left)
			}
			if !ap.l.Status().Up {
				t.Error("the lagg is down")
			}
			pingOK(t, tp.host, 3)
			echoOK(t, tp.host, 256<<10)
		})
	}
}
