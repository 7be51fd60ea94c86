package appliance

import (
	"sync"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

// Events for `ulagg monitor` and embedders: every lagg's events (the one
// handler the appliance registers per lagg, reconcile.go) and the
// appliance's own (a port's interface missing or back, a configuration
// change applied or saved) fan out to subscribers. Each subscriber has a
// bounded queue: an event that does not fit is lost for that subscriber
// and counted, and the next event that fits is preceded by a "lost"
// marker with the count, so a slow reader never holds up a lagg or the
// appliance.

// Appliance event kinds; the laggs' keep their names (lagg.EventKind).
const (
	EventPortMissing   = "port-missing"   // a configured port's interface is missing (Reason: why)
	EventPortBack      = "port-back"      // a missing port's interface appeared; the port is attached
	EventConfigApplied = "config-applied" // a change was applied (Detail: by what; Changes)
	EventConfigSaved   = "config-saved"   // the running configuration was saved (Detail: the file)
	EventLost          = "lost"           // Lost events did not fit the subscriber's queue
	EventEnd           = "end"            // the stream ends (Detail: why); the last line
)

// MonitorEvent is one event as `ulagg monitor --json` prints it (one per
// line; schema/events.schema.json): the lagg event's fields (a lagg's
// events carry its name; appliance-wide ones have lagg "") and the
// appliance's.
type MonitorEvent struct {
	lagg.EventJSON
	Reason  string       `json:"reason,omitempty"`
	Changes []ChangeJSON `json:"changes,omitempty"`
	Lost    uint64       `json:"lost,omitempty"`
}

// ChangeJSON is one configuration change (config.Item): its kind
// (setting, port, address, ...), what it is about, the old and new value
// in words ("" when absent), and the whole as one line.
type ChangeJSON struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Old  string `json:"old"`
	New  string `json:"new"`
	Text string `json:"text"`
}

// DefaultEventQueue is a subscriber's queue when Subscribe is given 0.
const DefaultEventQueue = 256

// Subscription receives events (Subscribe).
type Subscription struct {
	hub  *eventHub
	lagg string
	ch   chan MonitorEvent
	// lost counts events that did not fit since the last marker; guarded
	// by hub.mu (only publishers, which hold it, touch it).
	lost uint64
}

// C returns the subscription's events, in order. A "lost" marker says how
// many did not fit before the event after it.
func (s *Subscription) C() <-chan MonitorEvent { return s.ch }

// Close ends the subscription; it is idempotent.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	delete(s.hub.subs, s)
	s.hub.mu.Unlock()
}

// eventHub fans events out. Its zero value is ready.
type eventHub struct {
	mu sync.Mutex
	// +checklocks:mu
	subs map[*Subscription]struct{}
}

// Subscribe returns a subscription to the events of lagg name ("" every
// lagg), plus the appliance-wide ones, with a queue of queue events
// (DefaultEventQueue if 0).
func (a *Appliance) Subscribe(name string, queue int) *Subscription {
	if queue <= 0 {
		queue = DefaultEventQueue
	}
	s := &Subscription{hub: &a.events, lagg: name, ch: make(chan MonitorEvent, queue)}
	a.events.mu.Lock()
	if a.events.subs == nil {
		a.events.subs = map[*Subscription]struct{}{}
	}
	a.events.subs[s] = struct{}{}
	a.events.mu.Unlock()
	return s
}

// publish hands ev to every subscriber that wants it, without blocking.
func (h *eventHub) publish(ev MonitorEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range h.subs {
		if s.lagg != "" && ev.Lagg != "" && ev.Lagg != s.lagg {
			continue
		}
		if s.lost > 0 {
			m := MonitorEvent{EventJSON: lagg.EventJSON{Time: ev.Time, Kind: EventLost}, Lost: s.lost}
			select {
			case s.ch <- m:
				s.lost = 0
			default:
				s.lost++
				continue
			}
		}
		select {
		case s.ch <- ev:
		default:
			s.lost++
		}
	}
}

// laggEvent publishes one of a lagg's events.
func (a *Appliance) laggEvent(ev lagg.Event) {
	m := MonitorEvent{EventJSON: ev.JSON()}
	if ev.Kind == lagg.EventLink {
		// The port's link watcher reports carrier; a lagg that knows more
		// (the operator disabled the port, a link monitor) says so.
		m.Reason = "carrier"
		if ev.Detail != "" {
			m.Reason, m.Detail = ev.Detail, ""
		}
	}
	a.events.publish(m)
}

// portEventNow publishes an appliance event about a port.
func (a *Appliance) portEventNow(kind, laggName, port, reason string) {
	a.events.publish(MonitorEvent{
		EventJSON: lagg.EventJSON{Time: time.Now(), Lagg: laggName, Kind: kind, Port: port},
		Reason:    reason,
	})
}

// configEvent publishes the configuration changes items, applied by what
// (reload, the ifconfig line, ...): one event per lagg they touch, in the
// order of items, and one with lagg "" for the rest (services, metrics).
func (a *Appliance) configEvent(by string, items []config.Item) {
	if len(items) == 0 {
		return
	}
	now := time.Now()
	var order []string
	byLagg := map[string][]ChangeJSON{}
	for _, it := range items {
		if _, ok := byLagg[it.Lagg]; !ok {
			order = append(order, it.Lagg)
		}
		byLagg[it.Lagg] = append(byLagg[it.Lagg], ChangeJSON{Kind: it.Kind, Name: it.Name, Old: it.Old, New: it.New, Text: it.String()})
	}
	for _, l := range order {
		a.events.publish(MonitorEvent{
			EventJSON: lagg.EventJSON{Time: now, Lagg: l, Kind: EventConfigApplied, Detail: by},
			Changes:   byLagg[l],
		})
	}
}
