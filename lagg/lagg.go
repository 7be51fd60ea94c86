// Package lagg is NetBSD's lagg(4) as a gVisor netstack LinkEndpoint: one
// endpoint that aggregates several child endpoints (linkep.Port) under a
// protocol — none, failover, loadbalance or lacp.
//
// Control path and data path are separate. Every change (ports, priorities,
// link events, protocol, options, LACP) runs under Lagg.mu and ends by
// building a new immutable snapshot of who transmits and who may receive,
// published through an atomic pointer. The per-frame paths (WritePackets and
// each port's receive) load that snapshot once and neither lock nor allocate,
// as NetBSD's pserialize/psref readers do.
//
// Use it like any LinkEndpoint: New, AddPort, then hand it to
// stack.CreateNIC. The stack owns the ports' MAC and MTU through the lagg:
// the lagg's MAC and MTU are pushed to every port and the ports' own values
// come back when they leave or the lagg is closed.
package lagg

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
)

// Limits and defaults, as NetBSD has them.
const (
	MaxPorts        = 32
	DefaultPriority = 32768
	DefaultMTU      = 1500
	// controlQueueLen bounds slow-protocol frames waiting for the control
	// goroutine (NetBSD: LACP_RCVDU_LIMIT, 3 per port for 16 ports).
	controlQueueLen = 48
)

// EtherTypeSlowProtocols carries LACP and Marker PDUs; such frames never
// reach the IP stack.
const EtherTypeSlowProtocols tcpip.NetworkProtocolNumber = 0x8809

// Options configure a lagg. Use DefaultOptions and change what differs.
type Options struct {
	Name      string
	Proto     string            // none (default), failover, loadbalance, lacp
	MTU       uint32            // 0: taken from the first port
	MAC       tcpip.LinkAddress // "": the first port's MAC, else a random local one
	Hash      HashLayers        // 0: all layers
	RxAll     bool              // failover receives on every active port
	UpDelay   time.Duration     // a port's link must stay up this long before use
	DownDelay time.Duration     // and down this long before it is dropped
	LACP      LACPOptions
	Logger    *slog.Logger
}

// DefaultOptions returns the defaults of lagg(4) for a lagg named name.
func DefaultOptions(name string) Options {
	return Options{Name: name, Proto: "none", RxAll: true, Hash: HashAll, LACP: DefaultLACPOptions()}
}

// Lagg is the aggregating endpoint. It implements stack.LinkEndpoint and
// stack.GSOEndpoint.
type Lagg struct {
	name string
	log  *slog.Logger

	// Read by the data path without a lock.
	snap   atomic.Pointer[snapshot]
	mtu    atomic.Uint32
	maxHdr atomic.Uint32
	ctr    counters

	capture      captureRegistry
	announcer    atomic.Pointer[func()]
	failovers    atomic.Uint64
	lastFailover atomic.Int64 // ns from carrier loss to the first frame on the new port

	ctlQ   chan controlFrame
	kick   chan struct{} // asks the control goroutine to announce
	timer  *time.Timer   // the protocol's timer, run by the control goroutine
	stopCh chan struct{}
	wg     sync.WaitGroup // the control goroutine and port removals
	// detaching counts Attach(nil)'s detach goroutines, which releasePort
	// waits for (it may run inside wg itself, so it cannot wait for wg).
	detaching sync.WaitGroup

	mu sync.Mutex
	// +checklocks:mu
	proto protocol
	// +checklocks:mu
	protoName string
	// +checklocks:mu
	opts options
	// +checklocks:mu
	ports []*port // in priority order, then insertion order
	// +checklocks:mu
	slots uint64 // slots in use, freed only once a port is fully released
	// +checklocks:mu
	seq uint64
	// +checklocks:mu
	dist distribution
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// +checklocks:mu
	mac tcpip.LinkAddress
	// +checklocks:mu
	macUser bool // set by the user: never replaced by a port's
	// +checklocks:mu
	macRandom tcpip.LinkAddress
	// +checklocks:mu
	macPort *port // the port whose MAC the lagg uses, if any
	// +checklocks:mu
	mtuSet bool // configured or taken from a port: later ports follow it
	// +checklocks:mu
	lossAt time.Time // last carrier loss, to time failovers
	// +checklocks:mu
	closed bool
}

// options are the lagg's protocol options; protocols read them under mu.
type options struct {
	rxAll     bool
	hash      HashLayers
	upDelay   time.Duration
	downDelay time.Duration
	lacp      LACPOptions
}

// snapshot is what the data path reads: immutable once published.
type snapshot struct {
	tx         []*port
	hashed     bool
	flows      *flowTable // with hashed: where each flow bucket goes
	rx         uint64
	up         bool
	layers     HashLayers
	mac        tcpip.LinkAddress
	caps       stack.LinkEndpointCapabilities
	gso        stack.SupportedGSO
	gsoMax     uint32
	dispatcher stack.NetworkDispatcher
	failover   *failoverClock // set while the first frame on a new TX port is awaited
}

// failoverClock times a failover: from carrier loss to the first frame the
// new transmit port sends.
type failoverClock struct {
	start time.Time
	port  *port
	done  atomic.Bool
}

type controlFrame struct {
	port  *port
	frame []byte
}

var _ stack.LinkEndpoint = (*Lagg)(nil)
var _ stack.GSOEndpoint = (*Lagg)(nil)

// New returns a lagg with no ports.
func New(o Options) (*Lagg, error) {
	if o.Name == "" {
		return nil, errors.New("lagg: a name is required")
	}
	proto, err := newProtocol(o.Proto)
	if err != nil {
		return nil, fmt.Errorf("lagg %s: %w", o.Name, err)
	}
	if o.MAC != "" {
		if err := validMAC(o.MAC); err != nil {
			return nil, fmt.Errorf("lagg %s: %w", o.Name, err)
		}
	}
	if o.MTU != 0 && (o.MTU < header.IPv4MinimumMTU || o.MTU > 65535) {
		return nil, fmt.Errorf("lagg %s: MTU %d out of range %d..65535", o.Name, o.MTU, header.IPv4MinimumMTU)
	}
	if err := o.LACP.validate(); err != nil {
		return nil, fmt.Errorf("lagg %s: %w", o.Name, err)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	l := &Lagg{
		name:   o.Name,
		log:    log.With("lagg", o.Name),
		ctlQ:   make(chan controlFrame, controlQueueLen),
		kick:   make(chan struct{}, 1),
		timer:  time.NewTimer(time.Hour),
		stopCh: make(chan struct{}),
	}
	l.timer.Stop()
	l.maxHdr.Store(header.EthernetMinimumSize)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opts = options{rxAll: o.RxAll, hash: o.Hash, upDelay: o.UpDelay, downDelay: o.DownDelay, lacp: o.LACP}
	if l.opts.hash == 0 {
		l.opts.hash = HashAll
	}
	l.macRandom = randomMAC()
	l.mac = l.macRandom
	if o.MAC != "" {
		l.mac, l.macUser = o.MAC, true
	}
	l.mtu.Store(DefaultMTU)
	if o.MTU != 0 {
		l.mtu.Store(o.MTU)
		l.mtuSet = true
	}
	l.protoName = protoOrNone(o.Proto)
	l.proto = proto
	l.proto.start(l)
	l.rebuildLocked()
	l.wg.Add(1)
	go l.routineControl()
	return l, nil
}

func protoOrNone(name string) string {
	if name == "" {
		return "none"
	}
	return name
}

// Name returns the lagg's name.
func (l *Lagg) Name() string { return l.name }

// SetAnnouncer registers fn, called (on the lagg's control goroutine, never
// with a lock held) when peers should learn the lagg's addresses again: the
// failover transmit port or the MAC changed, or the link came up. The stack
// answers with gratuitous ARP and unsolicited neighbour advertisements.
func (l *Lagg) SetAnnouncer(fn func()) {
	if fn == nil {
		l.announcer.Store(nil)
		return
	}
	l.announcer.Store(&fn)
}

func (l *Lagg) requestAnnounce() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// routineControl serialises what arrives asynchronously: slow-protocol
// frames, protocol timers and announcements.
func (l *Lagg) routineControl() {
	defer l.wg.Done()
	age := time.NewTicker(flowAgeInterval)
	defer age.Stop()
	for {
		select {
		case <-l.stopCh:
			return
		case <-age.C:
			if ft := l.snap.Load().flows; ft != nil {
				ft.age()
			}
		case cf := <-l.ctlQ:
			l.mu.Lock()
			if !cf.port.removed && !l.closed && !l.proto.controlFrame(cf.port, cf.frame) {
				cf.port.ctr.drop(DropControlFrame, 1)
				l.ctr.drop(DropControlFrame, 1)
			}
			l.mu.Unlock()
		case <-l.timer.C:
			l.mu.Lock()
			if !l.closed {
				l.proto.timer(time.Now())
			}
			l.mu.Unlock()
		case <-l.kick:
			if fn := l.announcer.Load(); fn != nil {
				(*fn)()
			}
		}
	}
}

// armTimerLocked makes the control goroutine call the protocol's timer at
// deadline (replacing any earlier deadline).
//
// +checklocks:l.mu
func (l *Lagg) armTimerLocked(deadline time.Time) {
	l.timer.Reset(time.Until(deadline))
}

// --- ports ---

// portOwners maps a port's identity to the lagg holding it, across all laggs
// of the process.
var portOwners = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// portIdentity names the interface behind a port uniquely on the host: host
// ports add their network namespace to the name, so equal names in two
// namespaces are two ports.
func portIdentity(child linkep.Port) string {
	if id, ok := child.(interface{ Identity() string }); ok {
		return id.Identity()
	}
	return child.Name()
}

// claimPort registers child for lagg and returns its identity, which
// unclaimPort takes back (a closed port may no longer know its namespace).
func claimPort(child linkep.Port, lagg string) (string, error) {
	id, name := portIdentity(child), child.Name()
	portOwners.Lock()
	defer portOwners.Unlock()
	switch owner, ok := portOwners.m[id]; {
	case !ok:
		portOwners.m[id] = lagg
		return id, nil
	case owner == lagg:
		return "", fmt.Errorf("%s is already a port of %s", name, lagg)
	default:
		return "", fmt.Errorf("%s is a port of another lagg, %s", name, owner)
	}
}

func unclaimPort(id string) {
	portOwners.Lock()
	delete(portOwners.m, id)
	portOwners.Unlock()
}

// AddPort adds child with a priority (smaller is preferred). The port gets
// the lagg's MAC and MTU; the add fails if it cannot take the MTU. Once
// AddPort succeeds the lagg owns child and closes it when the port leaves;
// when AddPort fails, child is untouched and still the caller's.
func (l *Lagg) AddPort(child linkep.Port, priority uint16) error {
	name := child.Name()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("lagg %s is closed", l.name)
	}
	if len(l.ports) >= MaxPorts {
		return fmt.Errorf("lagg %s: cannot add %s: the lagg already has the maximum of %d ports", l.name, name, MaxPorts)
	}
	id, err := claimPort(child, l.name)
	if err != nil {
		return fmt.Errorf("lagg %s: cannot add %s: %w", l.name, name, err)
	}
	p := &port{
		l:        l,
		child:    child,
		name:     name,
		identity: id,
		prio:     priority,
		seq:      l.seq,
		origMAC:  child.LinkAddress(),
		origMTU:  child.MTU(),
	}
	for p.slot = 0; l.slots&(1<<p.slot) != 0; p.slot++ {
	}
	mtu := l.mtu.Load()
	if !l.mtuSet && p.origMTU != 0 {
		mtu = p.origMTU // the first port sets the MTU
	}
	if p.origMTU != mtu {
		if err := child.SetPortMTU(mtu); err != nil {
			unclaimPort(id)
			return fmt.Errorf("lagg %s: cannot add %s: it cannot take the lagg's MTU %d: %w", l.name, name, mtu, err)
		}
	}
	l.seq++
	l.slots |= 1 << p.slot
	l.mtu.Store(mtu)
	l.mtuSet = true
	child.Join(l.name)
	if hl := uint32(child.MaxHeaderLength()); hl > l.maxHdr.Load() {
		l.maxHdr.Store(hl)
	}
	l.ports = append(l.ports, p)
	l.sortPortsLocked()
	if !l.macUser && l.macPort == nil && validMAC(p.origMAC) == nil {
		l.mac, l.macPort = p.origMAC, p // NetBSD: the first port's MAC replaces the random one
		for _, q := range l.ports {
			q.child.SetLinkAddress(l.mac)
		}
		l.macChangedLocked()
	}
	child.SetLinkAddress(l.mac)
	// Handler first, then the state: a change in between reaches the
	// handler, which waits for mu and finds the state it reports.
	child.SetEventHandler(func(ev linkep.Event) { l.portEvent(p, ev) })
	p.linkUp = child.LinkUp()
	p.active = p.linkUp
	if l.dispatcher != nil {
		child.Attach(p)
		p.attached = true
	}
	l.proto.portAdded(p)
	l.log.Info("port added", "port", name, "priority", priority, "link", upDown(p.linkUp), "mtu", mtu)
	l.rebuildLocked()
	return nil
}

// RemovePort removes the port named name and gives it back its own MAC and
// MTU. It returns once the port is closed.
func (l *Lagg) RemovePort(name string) error {
	l.mu.Lock()
	p := l.portLocked(name)
	if p == nil {
		l.mu.Unlock()
		return fmt.Errorf("lagg %s: %s is not a port of this lagg", l.name, name)
	}
	l.detachPortLocked(p, "removed")
	l.mu.Unlock()
	l.releasePort(p)
	return nil
}

// +checklocks:l.mu
func (l *Lagg) portLocked(name string) *port {
	for _, p := range l.ports {
		if p.name == name {
			return p
		}
	}
	return nil
}

// detachPortLocked takes p out of the lagg's tables; releasePort finishes
// the job without the lock, since stopping a port waits for its receive
// goroutines.
//
// +checklocks:l.mu
func (l *Lagg) detachPortLocked(p *port, why string) {
	p.removed = true
	if p.delay != nil {
		p.delay.Stop()
	}
	l.ports = slices.DeleteFunc(l.ports, func(q *port) bool { return q == p })
	l.proto.portRemoved(p)
	if l.macPort == p {
		// NetBSD: move to the next port's MAC, or back to the random one.
		l.macPort = nil
		l.mac = l.macRandom
		for _, q := range l.ports {
			if validMAC(q.origMAC) == nil {
				l.mac, l.macPort = q.origMAC, q
				break
			}
		}
		for _, q := range l.ports {
			q.child.SetLinkAddress(l.mac)
		}
		l.macChangedLocked()
		l.log.Info("lagg MAC follows the next port", "mac", l.mac.String())
	}
	l.log.Info("port removed", "port", p.name, "why", why)
	l.rebuildLocked()
}

// releasePort stops p and restores what the lagg changed on it.
func (l *Lagg) releasePort(p *port) {
	p.child.SetEventHandler(nil)
	l.mu.Lock()
	attached := p.attached
	p.attached = false
	l.mu.Unlock()
	if attached {
		p.child.Attach(nil)
	}
	// Attach(nil) of the whole lagg may be detaching this port right now;
	// closing it under that detach is not allowed.
	l.detaching.Wait()
	p.child.Wait()
	p.child.SetLinkAddress(p.origMAC)
	if p.origMTU != 0 && p.child.MTU() != p.origMTU {
		if err := p.child.SetPortMTU(p.origMTU); err != nil {
			l.log.Warn("cannot restore the port's MTU", "port", p.name, "mtu", p.origMTU, "err", err)
		}
	}
	p.child.Leave()
	p.child.Close()
	unclaimPort(p.identity)
	l.mu.Lock()
	l.slots &^= 1 << p.slot
	l.mu.Unlock()
}

// +checklocks:l.mu
func (l *Lagg) sortPortsLocked() {
	slices.SortStableFunc(l.ports, func(a, b *port) int {
		if a.prio != b.prio {
			return int(a.prio) - int(b.prio)
		}
		return int(a.seq - b.seq)
	})
}

// SetPortPriority changes a port's priority (smaller is preferred).
func (l *Lagg) SetPortPriority(name string, priority uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.portLocked(name)
	if p == nil {
		return fmt.Errorf("lagg %s: %s is not a port of this lagg", l.name, name)
	}
	if p.prio == priority {
		return nil
	}
	p.prio = priority
	l.sortPortsLocked()
	l.proto.portChanged(p)
	l.rebuildLocked()
	return nil
}

// Ports returns the names of the ports in priority order.
func (l *Lagg) Ports() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, len(l.ports))
	for i, p := range l.ports {
		names[i] = p.name
	}
	return names
}

// portEvent handles an event from a port's own goroutine.
func (l *Lagg) portEvent(p *port, ev linkep.Event) {
	switch ev.Kind {
	case linkep.LinkChanged:
		l.mu.Lock()
		if !p.removed && !l.closed {
			l.setLinkLocked(p, ev.Up)
		}
		l.mu.Unlock()
	case linkep.MTUChanged:
		l.log.Warn("a port's MTU was changed behind the lagg; the lagg's MTU was put back", "port", p.name, "seen", ev.MTU, "mtu", l.mtu.Load())
	case linkep.Gone:
		l.mu.Lock()
		if p.removed || l.closed {
			l.mu.Unlock()
			return
		}
		l.detachPortLocked(p, "interface gone")
		// Release on another goroutine: the event may come from the very
		// goroutine that releasing the port waits for.
		l.wg.Add(1)
		l.mu.Unlock()
		go func() {
			defer l.wg.Done()
			l.releasePort(p)
		}()
	}
}

// +checklocks:l.mu
func (l *Lagg) setLinkLocked(p *port, up bool) {
	if p.linkUp == up {
		return
	}
	p.linkUp = up
	if !up {
		l.lossAt = time.Now()
	}
	if p.delay != nil {
		p.delay.Stop()
		p.delay = nil
	}
	delay := l.opts.downDelay
	if up {
		delay = l.opts.upDelay
	}
	l.log.Info("port link changed", "port", p.name, "link", upDown(up))
	if delay <= 0 || p.active == up {
		l.setActiveLocked(p, up)
		return
	}
	p.delay = time.AfterFunc(delay, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if !p.removed && !l.closed && p.linkUp == up {
			l.setActiveLocked(p, up)
		}
	})
}

// +checklocks:l.mu
func (l *Lagg) setActiveLocked(p *port, active bool) {
	if p.active == active {
		return
	}
	p.active = active
	l.proto.portChanged(p)
	l.rebuildLocked()
}

// rebuildLocked asks the protocol for a new distribution and publishes it.
//
// +checklocks:l.mu
func (l *Lagg) rebuildLocked() {
	d := l.proto.distribute(l.ports)
	old := l.snap.Load()
	s := &snapshot{
		tx:         d.tx,
		hashed:     d.hashed,
		rx:         d.rx,
		up:         d.up && len(d.tx) > 0,
		layers:     l.opts.hash,
		mac:        l.mac,
		dispatcher: l.dispatcher,
	}
	s.caps, s.gso, s.gsoMax = l.capabilitiesLocked()
	if d.hashed {
		if old != nil && old.hashed && slices.Equal(old.tx, d.tx) {
			s.flows = old.flows // same ports: flows stay where they are
		} else {
			s.flows = new(flowTable)
		}
	}
	l.dist = d
	// Announce only once s is published: the announcement is sent through
	// the data path and must leave on the new port with the new MAC.
	announce := false
	if old != nil {
		if !d.hashed && len(old.tx) > 0 && len(d.tx) > 0 && old.tx[0] != d.tx[0] {
			// The failover transmit port moved.
			n := l.failovers.Add(1)
			// A failover is timed from the carrier loss that caused it; a
			// pre-emption or a priority change from now.
			start := time.Now()
			if !old.tx[0].active && !l.lossAt.IsZero() {
				start = l.lossAt
			}
			l.lossAt = time.Time{}
			s.failover = &failoverClock{start: start, port: d.tx[0]}
			l.log.Info("transmit port changed", "from", old.tx[0].name, "to", d.tx[0].name, "failovers", n)
			announce = true
		}
		if old.mac != s.mac {
			announce = true
		}
		if old.up != s.up {
			l.log.Info("lagg link changed", "link", upDown(s.up))
			if s.up {
				announce = true
			}
		}
		if s.failover == nil && old.failover != nil && !old.failover.done.Load() && len(d.tx) > 0 && d.tx[0] == old.failover.port {
			s.failover = old.failover // still waiting for the first frame
		}
	}
	l.snap.Store(s)
	if announce {
		l.requestAnnounce()
	}
}

// capabilitiesLocked is the AND of the ports' capabilities plus address
// resolution, and the GSO kind all ports share.
//
// +checklocks:l.mu
func (l *Lagg) capabilitiesLocked() (stack.LinkEndpointCapabilities, stack.SupportedGSO, uint32) {
	if len(l.ports) == 0 {
		return stack.CapabilityResolutionRequired, stack.GSONotSupported, 0
	}
	caps := ^stack.LinkEndpointCapabilities(0)
	gso, gsoMax := stack.SupportedGSO(-1), uint32(0)
	for _, p := range l.ports {
		caps &= p.child.Capabilities()
		g, ok := p.child.(stack.GSOEndpoint)
		switch {
		case !ok || g.SupportedGSO() == stack.GSONotSupported:
			gso = stack.GSONotSupported
		case gso == -1:
			gso, gsoMax = g.SupportedGSO(), g.GSOMaxSize()
		case gso != g.SupportedGSO():
			gso = stack.GSONotSupported
		default:
			gsoMax = min(gsoMax, g.GSOMaxSize())
		}
	}
	caps &^= stack.CapabilityLoopback | stack.CapabilitySaveRestore
	caps |= stack.CapabilityResolutionRequired
	if gso == stack.GSONotSupported {
		gsoMax = 0
	}
	return caps, gso, gsoMax
}

// --- protocol and options ---

// SetProto switches the protocol at runtime. Unlike NetBSD, the ports stay.
func (l *Lagg) SetProto(name string) error {
	name = protoOrNone(name)
	np, err := newProtocol(name)
	if err != nil {
		return fmt.Errorf("lagg %s: %w", l.name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if name == l.protoName {
		return nil
	}
	l.proto.stop()
	l.timer.Stop()
	l.proto, l.protoName = np, name
	np.start(l)
	for _, p := range l.ports {
		np.portAdded(p)
	}
	l.log.Info("protocol changed", "proto", name)
	l.rebuildLocked()
	return nil
}

// Proto returns the current protocol's name.
func (l *Lagg) Proto() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.protoName
}

// SetRxAll sets failover's rx-all option. As in NetBSD it is refused unless
// the lagg runs failover.
func (l *Lagg) SetRxAll(on bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.protoName != "failover" {
		return fmt.Errorf("lagg %s: laggfailover options need protocol failover, not %s", l.name, l.protoName)
	}
	l.opts.rxAll = on
	l.rebuildLocked()
	return nil
}

// SetHashLayers chooses the layers the flow hash covers.
func (l *Lagg) SetHashLayers(h HashLayers) {
	if h == 0 {
		h = HashAll
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opts.hash = h
	l.rebuildLocked()
}

// SetDelays sets the up and down delays applied to port link changes.
func (l *Lagg) SetDelays(up, down time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.opts.upDelay, l.opts.downDelay = up, down
}

// SetLaggMTU applies mtu to every port, or to none: a port that refuses
// makes the others go back to the old MTU.
func (l *Lagg) SetLaggMTU(mtu uint32) error {
	if mtu < header.IPv4MinimumMTU || mtu > 65535 {
		return fmt.Errorf("lagg %s: MTU %d out of range %d..65535", l.name, mtu, header.IPv4MinimumMTU)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.mtu.Load()
	for i, p := range l.ports {
		if err := p.child.SetPortMTU(mtu); err != nil {
			for _, q := range l.ports[:i] {
				if rerr := q.child.SetPortMTU(old); rerr != nil {
					l.log.Error("cannot roll back a port's MTU", "port", q.name, "mtu", old, "err", rerr)
				}
			}
			return fmt.Errorf("lagg %s: port %s refused MTU %d, every port keeps %d: %w", l.name, p.name, mtu, old, err)
		}
	}
	l.mtu.Store(mtu)
	l.mtuSet = true
	l.log.Info("MTU changed", "mtu", mtu)
	return nil
}

// SetMAC sets the lagg's MAC; it is pushed to every port and no longer
// follows the ports.
func (l *Lagg) SetMAC(mac tcpip.LinkAddress) error {
	if err := validMAC(mac); err != nil {
		return fmt.Errorf("lagg %s: %w", l.name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mac, l.macUser, l.macPort = mac, true, nil
	for _, p := range l.ports {
		p.child.SetLinkAddress(mac)
	}
	l.macChangedLocked()
	l.rebuildLocked()
	return nil
}

// macChangedLocked tells a protocol that cares (lacp: the system ID).
//
// +checklocks:l.mu
func (l *Lagg) macChangedLocked() {
	if mc, ok := l.proto.(interface{ macChanged() }); ok {
		mc.macChanged()
	}
}

func validMAC(mac tcpip.LinkAddress) error {
	if len(mac) != header.EthernetAddressSize {
		return fmt.Errorf("MAC %q is not an Ethernet address", mac)
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("MAC %s is a group address", mac)
	}
	if mac == header.UnspecifiedEthernetAddress {
		return fmt.Errorf("MAC %s is all zero", mac)
	}
	return nil
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

// --- stack.LinkEndpoint ---

// MTU implements stack.LinkEndpoint.
func (l *Lagg) MTU() uint32 { return l.mtu.Load() }

// SetMTU implements stack.LinkEndpoint (Stack.SetNICMTU). Use SetLaggMTU to
// learn whether it worked.
func (l *Lagg) SetMTU(mtu uint32) {
	if err := l.SetLaggMTU(mtu); err != nil {
		l.log.Warn("MTU change refused", "err", err)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint: the largest of the ports'.
func (l *Lagg) MaxHeaderLength() uint16 { return uint16(l.maxHdr.Load()) }

// LinkAddress implements stack.LinkEndpoint.
func (l *Lagg) LinkAddress() tcpip.LinkAddress { return l.snap.Load().mac }

// SetLinkAddress implements stack.LinkEndpoint.
func (l *Lagg) SetLinkAddress(addr tcpip.LinkAddress) {
	if err := l.SetMAC(addr); err != nil {
		l.log.Warn("MAC change refused", "err", err)
	}
}

// Capabilities implements stack.LinkEndpoint.
func (l *Lagg) Capabilities() stack.LinkEndpointCapabilities { return l.snap.Load().caps }

// GSOMaxSize implements stack.GSOEndpoint.
func (l *Lagg) GSOMaxSize() uint32 { return l.snap.Load().gsoMax }

// SupportedGSO implements stack.GSOEndpoint: the kind every port supports.
func (l *Lagg) SupportedGSO() stack.SupportedGSO { return l.snap.Load().gso }

// ARPHardwareType implements stack.LinkEndpoint.
func (*Lagg) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint. The NIC calls it only on the
// outermost endpoint, so the lagg writes the Ethernet header and the ports
// send the frame as it is.
func (*Lagg) AddHeader(pkt *stack.PacketBuffer) { linkep.AddEthernetHeader(pkt) }

// ParseHeader implements stack.LinkEndpoint.
func (*Lagg) ParseHeader(pkt *stack.PacketBuffer) bool { return linkep.ParseEthernetHeader(pkt) }

// Attach implements stack.LinkEndpoint. Each port is attached to its own
// shim so the lagg knows where a frame came in; nil reaches every port as a
// literal nil. Ports detached this way cannot be attached again (fdbased
// endpoints are single-use).
//
// The stack calls Attach(nil) with its own lock held, and a port's receive
// goroutine may be inside the stack waiting for that lock, so the ports are
// detached (which waits for those goroutines) on another goroutine; from now
// on the shims drop what they receive. Close waits for the detach.
func (l *Lagg) Attach(d stack.NetworkDispatcher) {
	l.mu.Lock()
	if d == nil {
		var detach []*port
		for _, p := range l.ports {
			if p.attached {
				p.attached, p.dead = false, true
				detach = append(detach, p)
			}
		}
		l.dispatcher = nil
		l.rebuildLocked()
		if len(detach) > 0 {
			l.wg.Add(1)
			l.detaching.Add(1)
			go func() {
				defer l.wg.Done()
				defer l.detaching.Done()
				for _, p := range detach {
					p.child.Attach(nil)
				}
			}()
		}
		l.mu.Unlock()
		return
	}
	defer l.mu.Unlock()
	l.dispatcher = d
	for _, p := range l.ports {
		if !p.attached && !p.dead {
			p.child.Attach(p)
			p.attached = true
		}
	}
	l.rebuildLocked()
}

// IsAttached implements stack.LinkEndpoint.
func (l *Lagg) IsAttached() bool { return l.snap.Load().dispatcher != nil }

// Wait implements stack.LinkEndpoint. The stack calls it with its own lock
// held, so it waits for nothing that may be calling into the stack: not the
// control goroutine and not the ports' receive goroutines. Close, which the
// stack calls after releasing its lock, waits for all of them.
func (l *Lagg) Wait() {}

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
		p.removed = true
		if p.delay != nil {
			p.delay.Stop()
		}
	}
	l.proto.stop()
	l.timer.Stop()
	l.rebuildLocked()
	l.mu.Unlock()
	close(l.stopCh)
	l.wg.Wait()
	for _, p := range ports {
		l.releasePort(p)
	}
	for {
		select {
		case <-l.ctlQ:
		default:
			return
		}
	}
}

// SetOnCloseAction implements stack.LinkEndpoint. A lagg never dies on its
// own (it lives on with no ports), so there is nothing to call.
func (*Lagg) SetOnCloseAction(func()) {}

// --- data path ---

// WritePackets implements stack.LinkEndpoint. The caller keeps its
// references; frames go to ports unchanged.
func (l *Lagg) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	s := l.snap.Load()
	n := len(s.tx)
	if n == 0 || !s.up {
		l.ctr.drop(DropNoPort, pkts.Len())
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	if n == 1 || !s.hashed {
		return s.tx[0].write(s, pkts)
	}
	all := pkts.AsSlice()
	first := s.pick(all[0])
	mixed := false
	for _, pkt := range all[1:] {
		if s.pick(pkt) != first {
			mixed = true
			break
		}
	}
	if !mixed {
		return first.write(s, pkts)
	}
	// A batch that spans flows (only a queueing discipline builds those):
	// one list per frame, which costs an allocation each.
	sent := 0
	for _, pkt := range all {
		var one stack.PacketBufferList
		one.PushBack(pkt)
		m, err := s.pick(pkt).write(s, one)
		sent += m
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// SelectTxPort returns the name of the port that would send pkt now, or ""
// with no port. It runs the same code as WritePackets.
func (l *Lagg) SelectTxPort(pkt *stack.PacketBuffer) string {
	if p := l.snap.Load().pick(pkt); p != nil {
		return p.name
	}
	return ""
}

// pick is the per-frame transmit port selection.
func (s *snapshot) pick(pkt *stack.PacketBuffer) *port {
	n := len(s.tx)
	switch {
	case n == 0 || !s.up:
		return nil
	case n == 1 || !s.hashed:
		return s.tx[0]
	}
	return s.tx[s.flows.port(hashPacket(pkt, s.layers), n)]
}

// controlInput queues a slow-protocols frame for the control goroutine.
func (l *Lagg) controlInput(p *port, pkt *stack.PacketBuffer) {
	buf := pkt.ToBuffer()
	frame := buf.Flatten()
	buf.Release()
	if cs := l.capture.cur.Load(); cs != nil {
		cs.deliverBytes(p, In, frame)
	}
	select {
	case l.ctlQ <- controlFrame{port: p, frame: frame}:
		p.ctr.rx(len(frame))
	default:
		p.ctr.drop(DropControlQueue, 1)
		l.ctr.drop(DropControlQueue, 1)
	}
}

// sendFrame sends a complete Ethernet frame (an LACPDU, a marker) on
// one port, whatever the distribution. Protocols call it with mu held.
func (p *port) sendFrame(frame []byte) error {
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{
		ReserveHeaderBytes: int(p.child.MaxHeaderLength()),
		Payload:            buffer.MakeWithData(frame[header.EthernetMinimumSize:]),
	})
	defer pkt.DecRef()
	copy(pkt.LinkHeader().Push(header.EthernetMinimumSize), frame[:header.EthernetMinimumSize])
	pkt.NetworkProtocolNumber = EtherTypeSlowProtocols
	var list stack.PacketBufferList
	list.PushBack(pkt)
	if _, err := p.child.WritePackets(list); err != nil {
		p.ctr.drop(DropTxError, 1)
		return fmt.Errorf("port %s: %s", p.name, err)
	}
	p.ctr.tx(1, len(frame))
	if cs := p.l.capture.cur.Load(); cs != nil {
		cs.deliverBytes(p, Out, frame)
	}
	return nil
}
