package lagg_test

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// find returns the first event of kind k for port, if any.
func (e *eventLog) find(k lagg.EventKind, port string) (lagg.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Kind == k && (port == "" || ev.Port == port) {
			return ev, true
		}
	}
	return lagg.Event{}, false
}

func (e *eventLog) waitFor(t *testing.T, k lagg.EventKind, port string) lagg.Event {
	t.Helper()
	var ev lagg.Event
	testkit.WaitFor(t, 5*time.Second, k.String()+" event for "+port, func() bool {
		var ok bool
		ev, ok = e.find(k, port)
		return ok
	})
	return ev
}

// TestEventsFailover: a pulled link gives a link event, a failover from the
// old port to the new one, and, once traffic leaves on the new port, the
// failover's duration; the link's return and a pre-emption follow.
func TestEventsFailover(t *testing.T) {
	p := newPair(t, "failover", 2, nil)
	var log eventLog
	p.a.l.SetEventHandler(log.add)
	x := startTransfer(t, p.a, p.b, 9200, -1)
	x.WaitReceived(t, 1<<20, 10*time.Second)

	p.wires[0].SetLinkUp(false)
	link := log.waitFor(t, lagg.EventLink, p.portA(0))
	if link.Up || link.Lagg != p.a.l.Name() || link.Time.IsZero() {
		t.Errorf("link event: %+v, want %s down with lagg and time", link, p.portA(0))
	}
	fo := log.waitFor(t, lagg.EventFailover, p.portA(1))
	if fo.From != p.portA(0) {
		t.Errorf("failover event: from %q, want %q", fo.From, p.portA(0))
	}
	done := log.waitFor(t, lagg.EventFailoverDone, p.portA(1))
	if done.Duration <= 0 || done.Duration > 5*time.Second {
		t.Errorf("failover-done duration %v, want a positive time under 5 s", done.Duration)
	}
	if got := p.a.l.Status().LastFailover; got != done.Duration {
		t.Errorf("status last failover %v, event %v: want the same", got, done.Duration)
	}

	p.wires[0].SetLinkUp(true)
	log.waitFor(t, lagg.EventFailover, p.portA(0)) // pre-emption
	x.Stop()
	x.Wait(t, 30*time.Second)
}

// TestEventsPorts: adding, removing and losing ports are reported.
func TestEventsPorts(t *testing.T) {
	p, gone := goneWires(t)
	var log eventLog
	p.a.l.SetEventHandler(log.add)
	i := p.addBoth(t, 3000)
	log.waitFor(t, lagg.EventPortAdded, p.portA(i))
	p.removeBoth(t, i)
	log.waitFor(t, lagg.EventPortRemoved, p.portA(i))
	gone.gone()
	log.waitFor(t, lagg.EventPortGone, p.portA(0))
	if err := p.a.l.Update(func(c *lagg.Config) { c.Proto = lagg.ProtoLoadBalance }); err != nil {
		t.Fatal(err)
	}
	if ev := log.waitFor(t, lagg.EventConfig, ""); ev.Detail != "proto" {
		t.Errorf("config event detail %q, want proto", ev.Detail)
	}
}

// TestEventsLACP: ports reaching collecting and distributing are reported
// per port, and so is a port leaving distribution.
func TestEventsLACP(t *testing.T) {
	p := newPair(t, "lacp", 2, func(side int, o *lagg.Options) { o.LACP.FastRate = true })
	var log eventLog
	p.a.l.SetEventHandler(log.add)
	testkit.WaitFor(t, 10*time.Second, "both ports distributing", func() bool {
		for _, ps := range p.a.l.Status().Ports {
			if ps.Flags&lagg.PortDistributing == 0 {
				return false
			}
		}
		return true
	})
	p.wires[1].SetLinkUp(false)
	testkit.WaitFor(t, 5*time.Second, "lacp event for the pulled port", func() bool {
		log.mu.Lock()
		defer log.mu.Unlock()
		for _, ev := range log.evs {
			if ev.Kind == lagg.EventLACP && ev.Port == p.portA(1) && ev.Detail == "detached" {
				return true
			}
		}
		return false
	})
}

// TestEventsSlowHandler: a handler that blocks holds up neither traffic nor
// LACP; what does not fit the queue is counted as lost.
func TestEventsSlowHandler(t *testing.T) {
	p := newPair(t, "lacp", 2, func(side int, o *lagg.Options) { o.LACP.FastRate = true })
	release := make(chan struct{})
	p.a.l.SetEventHandler(func(lagg.Event) { <-release })
	defer close(release)
	for range 200 {
		p.wires[1].SetLinkUp(false)
		p.wires[1].SetLinkUp(true)
	}
	testkit.WaitFor(t, 10*time.Second, "both ports distributing with a stuck handler", func() bool {
		for _, ps := range p.a.l.Status().Ports {
			if ps.Flags&lagg.PortDistributing == 0 {
				return false
			}
		}
		return true
	})
	if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatalf("ping with a stuck event handler: %v", err)
	}
	if p.a.l.EventsLost() == 0 {
		t.Error("events lost: 0 after 400 link changes with a stuck handler, want some counted")
	}
}
