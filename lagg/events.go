package lagg

import (
	"fmt"
	"time"
)

// EventKind says what happened in a lagg.
type EventKind int

// Event kinds.
const (
	// EventLink: a port's link went up or down (Port, Up).
	EventLink EventKind = iota + 1
	// EventFailover: the failover transmit port changed (From, Port).
	EventFailover
	// EventFailoverDone: the first frame left on the new transmit port
	// (From, Port, Duration since the carrier loss or the change).
	EventFailoverDone
	// EventLACP: a port's LACP state changed (Port, Detail: the new
	// collecting/distributing state).
	EventLACP
	// EventPortAdded and EventPortRemoved: a port joined or left (Port).
	EventPortAdded
	EventPortRemoved
	// EventPortGone: a port's interface disappeared; the port left (Port).
	EventPortGone
	// EventLaggLink: the lagg's own link went up or down (Up).
	EventLaggLink
	// EventConfig: Apply changed the lagg's settings (Detail: what).
	EventConfig
	// EventMonitor: the link monitor took a port down or up again (Port,
	// Up, Detail: the reason, e.g. "arp 10.0.0.1 unanswered 3×").
	EventMonitor
)

var eventNames = map[EventKind]string{
	EventLink: "link", EventFailover: "failover", EventFailoverDone: "failover-done",
	EventLACP: "lacp", EventPortAdded: "port-added", EventPortRemoved: "port-removed",
	EventPortGone: "port-gone", EventLaggLink: "lagg-link", EventConfig: "config",
	EventMonitor: "monitor",
}

func (k EventKind) String() string {
	if n, ok := eventNames[k]; ok {
		return n
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is one thing that happened in a lagg, for embedders that must not
// poll (SetEventHandler).
//
// json.Marshal prints it as `ulagg monitor --json` does (Event.JSON);
// the tags name the same keys.
type Event struct {
	Kind     EventKind     `json:"kind"`
	Time     time.Time     `json:"time"`
	Lagg     string        `json:"lagg"`
	Port     string        `json:"port,omitempty"`
	Up       bool          `json:"up,omitempty"`
	From     string        `json:"from,omitempty"`   // EventFailover, EventFailoverDone: the old transmit port
	Duration time.Duration `json:"-"`                // EventFailoverDone; as JSON, duration_ms
	Detail   string        `json:"detail,omitempty"` // what changed, in words
}

// eventQueueLen bounds events waiting for the handler.
const eventQueueLen = 256

// EventsLost counts events dropped because the handler's queue was full.
func (l *Lagg) EventsLost() uint64 { return l.eventsLost.Load() }

// SetEventHandler registers fn to receive the lagg's events, in order, on a
// goroutine of the lagg's that does nothing else, never with a lock held; fn
// may call the lagg's methods. While fn runs, further events wait in a
// bounded queue; beyond it they are lost (and counted, EventsLost), so a
// slow handler never holds up traffic or the protocols.
//
// Close waits for a running fn to return.
func (l *Lagg) SetEventHandler(fn func(Event)) {
	if fn == nil {
		l.handler.Store(nil)
		return
	}
	l.handler.Store(&fn)
}

// emit queues ev for the handler without blocking.
func (l *Lagg) emit(ev Event) {
	if ev.Lagg == "" {
		ev.Lagg = l.name
	}
	if ev.Time.IsZero() {
		ev.Time = l.clock.Now()
	}
	if l.handler.Load() == nil {
		return
	}
	select {
	case l.evQ <- ev:
	default:
		l.eventsLost.Add(1)
	}
}
