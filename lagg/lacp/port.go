package lacp

import "time"

type rxState uint8

const (
	rxPortDisabled rxState = iota
	rxExpired
	rxDefaulted
	rxCurrent
)

var rxNames = [...]string{"PORT_DISABLED", "EXPIRED", "DEFAULTED", "CURRENT"}

type muxState uint8

const (
	muxDetached muxState = iota
	muxWaiting
	muxAttached
	muxCollecting
	muxDistributing
)

var muxNames = [...]string{"DETACHED", "WAITING", "ATTACHED", "COLLECTING", "DISTRIBUTING"}

type selState uint8

const (
	unselected selState = iota
	selected
	standby
)

var selNames = [...]string{"unselected", "selected", "standby"}

type churnState uint8

const (
	noChurn churnState = iota
	churnMonitor
	churn
)

var churnNames = [...]string{"NO_CHURN", "CHURN_MONITOR", "CHURN"}

// Counters are per-port statistics.
type Counters struct {
	LACPDUsRx        uint64 `json:"lacpdus_rx"` // valid LACPDUs processed
	LACPDUsTx        uint64 `json:"lacpdus_tx"`
	MarkerRx         uint64 `json:"marker_rx"` // Marker Information PDUs
	MarkerResponseRx uint64 `json:"marker_response_rx"`
	MarkerResponseTx uint64 `json:"marker_response_tx"`
	MarkerDropped    uint64 `json:"marker_dropped"` // responses dropped: queue full under the slow protocols limit
	MalformedRx      uint64 `json:"malformed_rx"`   // LACP or Marker PDUs failing validation
	UnknownRx        uint64 `json:"unknown_rx"`     // other slow protocols, other Ethertypes
	LoopbackRx       uint64 `json:"loopback_rx"`    // our own LACPDUs (same system ID and priority): the port is looped
	Loops            uint64 `json:"loops"`          // times the port became looped
	DisabledRx       uint64 `json:"disabled_rx"`    // frames received while the link is down
	ActorChurn       uint64 `json:"actor_churn"`    // entries into actor CHURN
	PartnerChurn     uint64 `json:"partner_churn"`  // entries into partner CHURN
}

// partnerDefaults is the administrative partner (Partner_Admin_*): passive,
// long timeout, individual, out of sync. A passive actor therefore stays
// silent until an active partner speaks.
var partnerDefaults = Info{}

type port struct {
	id     PortID
	mac    [6]byte
	prio   uint16
	speed  uint64
	linkUp bool
	// adminDown: disabled by the operator (admin.go): never selected.
	adminDown bool

	// Receive machine.
	rx           rxState
	partner      Info // Partner_Oper_*; State.Sync is computed as in recordPDU
	heard        bool // a LACPDU arrived since the link came up
	reset        bool // partner identity changed: detach before reselecting
	currentWhile time.Time
	// looped: our own LACPDUs come back on this port (it is cabled to
	// another port of ours, or reflected), until loopedUntil. A looped port
	// never has a partner, never falls back and does not hold up fallback.
	looped      bool
	loopedUntil time.Time

	// Selection and mux.
	sel       selState
	agg       *aggregator
	nextAgg   *aggregator // selectAll scratch
	nextSel   selState    // selectAll scratch
	mux       muxState
	waitWhile time.Time
	waitDone  bool

	// Periodic and transmit machines.
	periodic     time.Time
	periodicFast bool
	ntt          bool
	lastActor    Info
	txTimes      [txLimit]time.Time // ring of recent LACPDU transmissions
	txNext       int
	slowTimes    [slowLimit]time.Time // ring of recent slow-protocol transmissions (LACPDUs and Marker Responses)
	slowNext     int
	txAt         time.Time // rate limit lifts
	markers      []MarkerPDU

	// Churn detection.
	actorChurn, partnerChurn     churnState
	actorChurnAt, partnerChurnAt time.Time

	// Last published data-path view, for Generation.
	pub pubView

	c Counters
}

type pubView struct {
	sel        selState
	agg        int
	coll, dist bool
	fallback   bool // collects and may transmit without LACP
	best       bool // the best fallback port
	looped     bool
}

func newPort(id PortID, mac [6]byte, pc PortConfig) *port {
	return &port{
		id:      id,
		mac:     mac,
		prio:    pc.Priority,
		speed:   pc.SpeedMbps,
		rx:      rxPortDisabled,
		partner: partnerDefaults,
		markers: make([]MarkerPDU, 0, maxPendingMarkers),
	}
}

func (p *port) timers() [7]time.Time {
	return [7]time.Time{p.currentWhile, p.periodic, p.waitWhile, p.txAt, p.actorChurnAt, p.partnerChurnAt, p.loopedUntil}
}

// due reports whether timer t is armed and expired at now, and disarms it.
func due(t *time.Time, now time.Time) bool {
	if t.IsZero() || t.After(now) {
		return false
	}
	*t = time.Time{}
	return true
}

// hasPartner reports whether the port has live or recently live partner
// information (selectable). A looped port's partner information, if any,
// is stale: what it hears is us.
func (p *port) hasPartner() bool {
	return p.linkUp && !p.looped && (p.rx == rxCurrent || (p.rx == rxExpired && p.heard))
}

// pending reports whether the port might still find a partner: its link
// is up but no LACPDU has arrived and it has not defaulted yet. A looped
// port will not.
func (p *port) pending() bool {
	return p.linkUp && p.rx == rxExpired && !p.heard && !p.looped
}

func (p *port) attached() bool { return p.mux >= muxAttached }
