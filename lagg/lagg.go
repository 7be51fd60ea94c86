package lagg

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/ratelog"
)

// Limits and defaults, as NetBSD has them.
const (
	MaxPorts        = 32
	DefaultPriority = 32768
	DefaultMTU      = 1500
)

// EtherTypeSlowProtocols carries LACP and Marker PDUs; such frames never
// reach the IP stack.
const EtherTypeSlowProtocols tcpip.NetworkProtocolNumber = 0x8809

// Options configure a new lagg: its name, its settings and its
// surroundings. Use DefaultOptions and change what differs.
type Options struct {
	Name string
	Config
	Logger *slog.Logger // nil: slog.Default()
	Clock  Clock        // nil: the real clock
}

// DefaultOptions returns the defaults of lagg(4) for a lagg named name.
func DefaultOptions(name string) Options {
	return Options{Name: name, Config: DefaultConfig()}
}

// Lagg is the aggregating endpoint. It implements stack.LinkEndpoint and
// stack.GSOEndpoint. The package documentation has the locking rules.
type Lagg struct {
	// Set by New, never changed.
	name  string
	log   *slog.Logger
	clock Clock

	// The data path's: read and written without a lock.
	snap         atomic.Pointer[snapshot]
	mtu          atomic.Uint32
	maxHdr       atomic.Uint32
	ctr          counters // the lagg's own drops, and what left with released ports
	capture      captureRegistry
	lastFailover atomic.Int64 // ns from carrier loss to the first frame on the new port
	frags        fragTracker  // fragmented TCP and UDP datagrams being verified (csum.go)

	// Hand-offs to the control goroutine (routineControl).
	announcer  atomic.Pointer[func()]
	handler    atomic.Pointer[func(Event)]
	eventsLost atomic.Uint64
	slowQ      slowQueues // slow-protocol frames, per port (slowq.go)
	evQ        chan Event
	kick       chan struct{} // announce: start a series (announce.go)
	annC       chan uint64   // announce: the series' next repetition is due
	timerC     chan struct{} // the protocol's deadline passed
	stopCh     chan struct{}
	wg         sync.WaitGroup // the control and event goroutines, port releases
	// detaching counts Attach(nil)'s detach goroutines, which releasePort
	// waits for (it may run inside wg itself, so it cannot wait for wg).
	detaching sync.WaitGroup
	// ann is the running series of announcements, owned by routineControl.
	ann announceSeries

	mu sync.Mutex
	// +checklocks:mu
	cfg Config
	// +checklocks:mu
	proto protocol
	// +checklocks:mu
	protoTimer Timer
	// +checklocks:mu
	ports []*port // in priority order, then join order
	// +checklocks:mu
	slots uint64 // slots in use, freed only once a port is fully released
	// +checklocks:mu
	seq uint64
	// +checklocks:mu
	dist distribution // as last published
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// +checklocks:mu
	vlans *vlanTable // VLAN interfaces (vlan_endpoint.go), as published
	// +checklocks:mu
	detached bool // Attach(nil) came: ports are never attached again
	// +checklocks:mu
	mac tcpip.LinkAddress
	// +checklocks:mu
	macRandom tcpip.LinkAddress // the MAC with no port and none configured; never changes
	// +checklocks:mu
	firstMTU uint32 // the MTU the first port brought: the derived MTU
	// +checklocks:mu
	lossAt time.Time // last carrier loss, to time failovers
	// +checklocks:mu
	failovers uint64
	// mon is the link monitor (monitor.go); the receive path reaches its
	// atomics (mon.rx) only through the snapshot.
	// +checklocks:mu
	mon monitor
	// +checklocks:mu
	admin adminState // disabled ports, zeroed counters (admin.go)
	// +checklocks:mu
	closed bool
}

var _ stack.LinkEndpoint = (*Lagg)(nil)
var _ stack.GSOEndpoint = (*Lagg)(nil)

// New returns a lagg with no ports and the settings in o.Config.
func New(o Options) (*Lagg, error) {
	if o.Name == "" {
		return nil, errors.New("lagg: a name is required")
	}
	log, clock := o.Logger, o.Clock
	if log == nil {
		log = slog.Default()
	}
	if clock == nil {
		clock = realClock{}
	}
	if _, limited := log.Handler().(*ratelog.Handler); !limited {
		// Link flaps and LACP partners can trigger the lagg's lines: bound them.
		log = slog.New(ratelog.New(log.Handler(), ratelog.Options{}))
	}
	l := &Lagg{
		name:      o.Name,
		log:       log.With("lagg", o.Name),
		clock:     clock,
		macRandom: randomMAC(),
		evQ:       make(chan Event, eventQueueLen),
		kick:      make(chan struct{}, 1),
		annC:      make(chan uint64),
		timerC:    make(chan struct{}, 1),
		stopCh:    make(chan struct{}),
	}
	l.slowQ.kick = make(chan struct{}, 1)
	l.maxHdr.Store(header.EthernetMinimumSize)
	l.mtu.Store(DefaultMTU)
	l.mu.Lock()
	defer l.mu.Unlock()
	// Apply starts from "none" on no ports: the same path as every later
	// change, so New and Apply cannot disagree.
	l.cfg = DefaultConfig().normalized()
	l.proto = protoNone{}
	l.mac = l.macRandom
	l.rebuildLocked()
	if err := l.applyLocked(o.Config); err != nil {
		return nil, err
	}
	l.wg.Add(2)
	go l.routineControl()
	go l.routineEvents()
	return l, nil
}

// Name returns the lagg's name.
func (l *Lagg) Name() string { return l.name }

// SetAnnouncer registers fn, called (on the lagg's control goroutine, never
// with a lock held) when peers should learn the lagg's addresses again: the
// failover transmit port or the MAC changed, or the link came up. The stack
// answers with gratuitous ARP and unsolicited neighbour advertisements.
// Each trigger calls fn Config.AnnounceCount times, Config.AnnounceInterval
// apart (announce.go).
func (l *Lagg) SetAnnouncer(fn func()) {
	if fn == nil {
		l.announcer.Store(nil)
		return
	}
	l.announcer.Store(&fn)
}

// routineControl serialises what arrives asynchronously: slow-protocol
// frames (served from the ports' queues in turn, slowq.go), protocol timers
// and announcements.
func (l *Lagg) routineControl() {
	defer l.wg.Done()
	age := time.NewTicker(flowAgeInterval)
	defer age.Stop()
	defer l.announceStop()
	for {
		select {
		case <-l.stopCh:
			return
		case <-age.C:
			if a, ok := l.snap.Load().dist.tx.(interface{ age() }); ok {
				a.age()
			}
		case <-l.slowQ.kick:
			l.serveSlow()
		case <-l.timerC:
			l.mu.Lock()
			if !l.closed {
				c := l.ctxLocked()
				l.proto.timer(c)
				l.finishLocked(c)
			}
			l.mu.Unlock()
		case <-l.kick:
			l.announceStart()
		case gen := <-l.annC:
			l.announceNext(gen)
		}
	}
}

// routineEvents delivers events to the handler, in order, on a goroutine of
// its own so that a slow handler delays nothing but other events.
func (l *Lagg) routineEvents() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stopCh:
			return
		case ev := <-l.evQ:
			if fn := l.handler.Load(); fn != nil {
				(*fn)(ev)
			}
		}
	}
}

// ctxLocked builds the context of a protocol call.
//
// +checklocks:l.mu
func (l *Lagg) ctxLocked() *protoCtx {
	return &protoCtx{
		name:      l.name,
		cfg:       &l.cfg,
		mac:       l.mac,
		ports:     l.ports,
		prev:      &l.dist,
		now:       l.clock.Now(),
		log:       l.log,
		sendFrame: (*port).sendFrame,
	}
}

// finishLocked does what a protocol call asked for: arm its timer, queue
// its events, publish a changed distribution.
//
// +checklocks:l.mu
func (l *Lagg) finishLocked(c *protoCtx) {
	if c.armed {
		l.stopProtoTimerLocked()
		l.protoTimer = l.clock.AfterFunc(c.deadline.Sub(l.clock.Now()), func() {
			select {
			case l.timerC <- struct{}{}:
			default:
			}
		})
	}
	for _, ev := range c.events {
		l.emit(ev)
	}
	c.events, c.armed = nil, false
	if c.rebuild {
		c.rebuild = false
		l.rebuildLocked()
	}
}

// +checklocks:l.mu
func (l *Lagg) stopProtoTimerLocked() {
	if l.protoTimer != nil {
		l.protoTimer.Stop()
		l.protoTimer = nil
	}
}

// failoverDone runs on the data path once the first frame left on a new
// failover port.
func (l *Lagg) failoverDone(fc *failoverClock) {
	d := l.clock.Now().Sub(fc.start)
	l.lastFailover.Store(int64(d))
	l.log.Info("failover complete: first frame on the new port", "port", fc.port.name, "after", d)
	l.emit(Event{Kind: EventFailoverDone, From: fc.from, Port: fc.port.name, Duration: d})
}

// Close implements stack.LinkEndpoint. It removes every port, restoring its
// MAC and MTU, and stops the lagg's goroutines. It is idempotent.
func (l *Lagg) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ports := l.ports
	l.ports = nil
	for _, p := range ports {
		l.leaveLocked(p)
	}
	l.proto.detach(l.ctxLocked())
	l.stopProtoTimerLocked()
	l.monitorStopLocked()
	l.rebuildLocked()
	l.mu.Unlock()
	close(l.stopCh)
	l.wg.Wait()
	for _, p := range ports {
		l.releasePort(p)
	}
	l.drainSlow()
}

func randomMAC() tcpip.LinkAddress {
	var b [6]byte
	_, _ = rand.Read(b[:])
	b[0] = b[0]&^1 | 2 // unicast, locally administered
	return tcpip.LinkAddress(b[:])
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "down"
}
