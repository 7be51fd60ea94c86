package lacp

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Protocol timers (IEEE 802.1AX-2014 6.4.4).
const (
	fastPeriodic   = 1 * time.Second
	slowPeriodic   = 30 * time.Second
	shortTimeout   = 3 * time.Second
	longTimeout    = 90 * time.Second
	churnDetection = 60 * time.Second
	txLimit        = 3 // LACPDUs per fastPeriodic window
	// slowLimit is the Slow Protocols transmit limit (IEEE 802.3 Annex
	// 57A.3): at most 10 frames of all slow protocols per port in any one
	// second. LACPDUs also keep to txLimit; Marker Responses only to this.
	slowLimit = 10
	// loopHold is how long a port stays looped after the last of our own
	// LACPDUs came back on it: a looped port that has defaulted hears
	// itself only every slowPeriodic, so three of those.
	loopHold = 3 * slowPeriodic
)

// Defaults, as in NetBSD (LACP_SYSTEM_PRIO, LAGG_PORT_PRIO, LACP_MAX_PORTS).
const (
	DefaultSystemPriority = 0x8000
	DefaultPortPriority   = 0x8000
	MaxPorts              = 16
)

// maxPendingMarkers bounds Marker Responses waiting for the slow protocols
// limit per port; more are dropped and counted.
const maxPendingMarkers = 4

// PortID is the actor port number. The lagg assigns it (1..N, stable); 0 is
// invalid.
type PortID uint16

// Config is the per-lagg LACP configuration. Fields are taken literally;
// start from DefaultConfig.
type Config struct {
	SystemMAC      [6]byte // actor system ID; unicast, non-zero
	SystemPriority uint16  // lower is better
	Key            uint16  // actor operational key, shared by all ports
	Active         bool    // active LACP; passive speaks only to an active partner
	FastRate       bool    // ask the partner for the short (3 s) timeout
	MaxPorts       int     // 1..16 SELECTED ports per aggregator, the rest STANDBY
	MultiSpeed     bool    // false: ports slower/faster than the best port are STANDBY
	MinPorts       int     // 1..MaxPorts distributing ports for Status.Up
	Fallback       bool    // with no partner on any port, carry traffic without LACP
	// Select is the aggregator selection policy: which aggregator carries
	// traffic when ports see more than one partner. The zero value is
	// SelectStable.
	Select SelectPolicy
	// AggregateWait bounds the mux WAITING state (Aggregate_Wait_Time). 0
	// attaches at once; see the package documentation.
	AggregateWait time.Duration
}

// DefaultConfig returns NetBSD-like defaults: active, slow rate, system
// priority 0x8000, 16 ports, multi-speed on, min ports 1, no fallback, no
// aggregate wait.
func DefaultConfig(mac [6]byte, key uint16) Config {
	return Config{
		SystemMAC:      mac,
		SystemPriority: DefaultSystemPriority,
		Key:            key,
		Active:         true,
		MaxPorts:       MaxPorts,
		MultiSpeed:     true,
		MinPorts:       1,
	}
}

// ErrConfig wraps every configuration error.
var ErrConfig = errors.New("lacp: bad config")

// ErrPort is returned for an unknown, duplicate or zero port ID.
var ErrPort = errors.New("lacp: bad port")

func (c *Config) validate() error {
	switch {
	case c.SystemMAC == [6]byte{}:
		return fmt.Errorf("%w: zero SystemMAC", ErrConfig)
	case c.SystemMAC[0]&1 != 0:
		return fmt.Errorf("%w: multicast SystemMAC", ErrConfig)
	case c.MaxPorts < 1 || c.MaxPorts > MaxPorts:
		return fmt.Errorf("%w: MaxPorts %d not in 1..%d", ErrConfig, c.MaxPorts, MaxPorts)
	case c.MinPorts < 1 || c.MinPorts > c.MaxPorts:
		return fmt.Errorf("%w: MinPorts %d not in 1..MaxPorts(%d)", ErrConfig, c.MinPorts, c.MaxPorts)
	case c.Select > SelectCount:
		return fmt.Errorf("%w: unknown Select policy %d", ErrConfig, c.Select)
	case c.AggregateWait < 0:
		return fmt.Errorf("%w: negative AggregateWait", ErrConfig)
	}
	return nil
}

// Output sends frames for the engine. SendPDU gets a full Ethernet frame
// (to 01:80:c2:00:00:02, Ethertype 0x8809) that is valid only during the
// call. It must not call back into the Engine.
type Output interface {
	SendPDU(port PortID, frame []byte)
}

// PortConfig is the static configuration of a port.
type PortConfig struct {
	Priority  uint16 // actor port priority, lower is better
	SpeedMbps uint64 // 0 = unknown (equal to other unknowns)
}

// Engine is the LACP state of one lagg. It is not safe for concurrent use:
// the owner serialises all calls. Every method that takes now first runs
// the timers due up to now; time never goes backwards (an earlier now is
// treated as the latest seen).
type Engine struct {
	cfg   Config
	out   Output
	now   time.Time
	ports []*port // sorted by id

	aggs      []*aggregator
	nextAggID int
	active    *aggregator
	selDirty  bool
	fallback  bool  // no port has or may get a partner: ports carry traffic without LACP
	fbBest    *port // the best fallback port, by priority then ID
	up        bool
	gen       uint64
	pubActive int

	rxUnknownPort uint64
	// partnerSystems is how many partner systems (and keys) the ports
	// with a partner see; above 1 is the mixed partners alarm, raised
	// mismatches times.
	partnerSystems int
	mismatches     uint64
	scratch        []*port
	txBuf          [frameLen]byte
}

// NewEngine returns an engine with no ports.
func NewEngine(cfg Config, out Output, now time.Time) (*Engine, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if out == nil {
		return nil, fmt.Errorf("%w: nil Output", ErrConfig)
	}
	return &Engine{cfg: cfg, out: out, now: now, nextAggID: 1}, nil
}

// Config returns the current configuration.
func (e *Engine) Config() Config { return e.cfg }

// SetConfig changes the configuration at run time and re-runs selection.
// A new system ID, system priority or key detaches every port first, as
// the partner will see a different actor. On error nothing changes.
func (e *Engine) SetConfig(cfg Config, now time.Time) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	e.advanceTo(now)
	old := e.cfg
	e.cfg = cfg
	if old.SystemMAC != cfg.SystemMAC || old.SystemPriority != cfg.SystemPriority || old.Key != cfg.Key {
		for _, p := range e.ports {
			p.reset = true
		}
	}
	if old.FastRate != cfg.FastRate {
		for _, p := range e.ports {
			if p.rx == rxCurrent {
				p.currentWhile = e.now.Add(e.currentTimeout())
			}
		}
	}
	e.selDirty = true
	e.settle()
	return nil
}

// AddPort adds a port. mac is the source address of its frames (the
// system MAC if zero).
func (e *Engine) AddPort(id PortID, mac [6]byte, pc PortConfig, linkUp bool, now time.Time) error {
	if id == 0 {
		return fmt.Errorf("%w: port 0", ErrPort)
	}
	i, found := e.find(id)
	if found {
		return fmt.Errorf("%w: port %d exists", ErrPort, id)
	}
	e.advanceTo(now)
	p := newPort(id, mac, pc)
	e.ports = slices.Insert(e.ports, i, p)
	if linkUp {
		e.portEnable(p, pc.SpeedMbps)
	}
	e.selDirty = true
	e.gen++
	e.settle()
	return nil
}

// RemovePort removes a port.
func (e *Engine) RemovePort(id PortID, now time.Time) error {
	i, found := e.find(id)
	if !found {
		return fmt.Errorf("%w: no port %d", ErrPort, id)
	}
	e.advanceTo(now)
	p := e.ports[i]
	e.portDisable(p)
	e.ports = slices.Delete(e.ports, i, i+1)
	if e.fbBest == p {
		e.fbBest = nil
	}
	e.selDirty = true
	e.gen++
	e.settle()
	return nil
}

// SetPortLink reports the port's link state and speed (0 = unknown). Link
// loss takes the port out of collecting and distributing within this call.
func (e *Engine) SetPortLink(id PortID, up bool, speedMbps uint64, now time.Time) error {
	p := e.port(id)
	if p == nil {
		return fmt.Errorf("%w: no port %d", ErrPort, id)
	}
	e.advanceTo(now)
	switch {
	case up && !p.linkUp:
		e.portEnable(p, speedMbps)
	case !up && p.linkUp:
		e.portDisable(p)
	}
	if p.speed != speedMbps {
		p.speed = speedMbps
		e.selDirty = true
	}
	e.settle()
	return nil
}

// SetPortPriority changes the actor port priority.
func (e *Engine) SetPortPriority(id PortID, prio uint16, now time.Time) error {
	p := e.port(id)
	if p == nil {
		return fmt.Errorf("%w: no port %d", ErrPort, id)
	}
	e.advanceTo(now)
	if p.prio != prio {
		p.prio = prio
		e.selDirty = true
	}
	e.settle()
	return nil
}

// Receive handles one received slow-protocol frame (full Ethernet frame,
// no FCS). Malformed, unknown and looped-back frames are counted and
// dropped; no input makes it fail.
func (e *Engine) Receive(id PortID, frame []byte, now time.Time) {
	e.advanceTo(now)
	p := e.port(id)
	if p == nil {
		e.rxUnknownPort++
		return
	}
	e.receive(p, frame)
	e.settle()
}

// Advance runs all timers due up to now.
func (e *Engine) Advance(now time.Time) {
	e.advanceTo(now)
}

// NextDeadline returns the earliest pending timer; ok is false when none
// is armed. The owner calls Advance at (or after) that time.
func (e *Engine) NextDeadline() (t time.Time, ok bool) {
	for _, p := range e.ports {
		for _, d := range p.timers() {
			if !d.IsZero() && (!ok || d.Before(t)) {
				t, ok = d, true
			}
		}
	}
	return t, ok
}

// Generation increases whenever the data path may have to change: a port's
// selection, aggregator, collecting or distributing state, the active
// aggregator, fallback, Up, or the port set.
func (e *Engine) Generation() uint64 { return e.gen }

func (e *Engine) find(id PortID) (int, bool) {
	return slices.BinarySearchFunc(e.ports, id, func(p *port, id PortID) int {
		return int(p.id) - int(id)
	})
}

func (e *Engine) port(id PortID) *port {
	if i, ok := e.find(id); ok {
		return e.ports[i]
	}
	return nil
}

// maxSteps bounds one advanceTo; every step consumes at least one timer,
// so this is only a guard against a bug turning into a hang.
const maxSteps = 1 << 20

// advanceTo runs every timer due up to now, one deadline at a time, so a
// long jump behaves like the owner waking at each deadline.
func (e *Engine) advanceTo(now time.Time) {
	if now.Before(e.now) {
		now = e.now
	}
	for range maxSteps {
		d, ok := e.NextDeadline()
		if !ok || d.After(now) {
			break
		}
		if d.After(e.now) {
			e.now = d
		}
		e.fireTimers()
		e.settle()
	}
	e.now = now
}
