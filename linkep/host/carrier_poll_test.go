package host_test

import (
	"slices"
	"testing"
	"time"

	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/host"
)

// TestCarrierPollFarEnd pulls the far end of a veth whose carrier events the
// kernel batches (htVeth: linkwatch treats them as non-urgent, as for a
// physical NIC). With polling the port reports the loss and the return
// within a few poll intervals; with events only it waits for linkwatch.
// Either way the port reports each change once.
func TestCarrierPollFarEnd(t *testing.T) {
	htLeakCheck(t)
	htRequireRoot(t)
	id := htID(t)
	a, b := htNewNet(t, "ulgt-"+id+"-ca"), htNewNet(t, "ulgt-"+id+"-cb")
	// Equal ifindexes on both ends: linkwatch then treats carrier changes
	// as non-urgent and batches them, as for a physical NIC (an unequal
	// veth pair's are urgent).
	htRun(t, "ip", "-n", a.name, "link", "add", "ulgtc0", "index", "100", "type", "veth", "peer", "name", "ulgtc0x", "index", "100", "netns", b.name)
	htRun(t, "ip", "-n", b.name, "link", "set", "ulgtc0x", "up")
	set := func(name string, up bool) time.Time {
		t.Helper()
		l := b.link(t, name)
		start := time.Now()
		fn := b.nl.LinkSetDown
		if up {
			fn = b.nl.LinkSetUp
		}
		if err := fn(l); err != nil {
			t.Fatal(err)
		}
		return start
	}
	far := func(up bool) time.Time { return set("ulgtc0x", up) }
	for _, tc := range []struct {
		name  string
		poll  time.Duration
		bound time.Duration // loss and return must be seen within
	}{
		{"default", 0, 50 * time.Millisecond},
		{"events-only", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := host.OpenAFPacket("ulgtc0", host.AFPacketOptions{Netns: a.name, CarrierPoll: tc.poll})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			ev := htWatch(p)
			htEventually(t, "link up", p.LinkUp)
			// Let linkwatch settle so no event of the setup is pending.
			time.Sleep(1200 * time.Millisecond)
			drain(ev)
			// Each loss comes ~50 ms after the previous return, so
			// linkwatch holds it back most of a second.
			const pulls = 4
			var down, up []time.Duration
			for range pulls {
				start := far(false)
				nextLink(t, ev, false)
				down = append(down, time.Since(start))
				start = far(true)
				nextLink(t, ev, true)
				up = append(up, time.Since(start))
				time.Sleep(50 * time.Millisecond)
			}
			// linkwatch's own events come within ~1s: no second report.
			time.Sleep(1200 * time.Millisecond)
			if n := countLink(drain(ev)); n != 0 {
				t.Errorf("%d more link events after the last return, want one per change", n)
			}
			t.Logf("measure: carrier poll %s: far-end down→port down median %v (%v), far-end up→port up median %v (%v)",
				tc.name, htMedian(down), down, htMedian(up), up)
			if tc.bound > 0 && htMedian(down) > tc.bound {
				t.Errorf("far-end loss seen after %v median, want ≤ %v", htMedian(down), tc.bound)
			}
			if tc.bound > 0 && htMedian(up) > tc.bound {
				t.Errorf("far-end return seen after %v median, want ≤ %v", htMedian(up), tc.bound)
			}
		})
	}
}

func drain(ch htEvents) []linkep.Event {
	var evs []linkep.Event
	for {
		select {
		case e := <-ch:
			evs = append(evs, e)
		default:
			return evs
		}
	}
}

func countLink(evs []linkep.Event) int {
	n := 0
	for _, e := range evs {
		if e.Kind == linkep.LinkChanged {
			n++
		}
	}
	return n
}

// nextLink waits for the next LinkChanged event, which must say up.
func nextLink(t *testing.T, ch htEvents, up bool) {
	t.Helper()
	ev := ch.next(t, isKind(linkep.LinkChanged), "link change")
	if ev.Up != up {
		t.Fatalf("link event up=%v, want up=%v (a duplicate or a stale report)", ev.Up, up)
	}
}

func htMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Microsecond)
}
