package lacp

// PortStatus is a snapshot of one port.
type PortStatus struct {
	ID         PortID
	LinkUp     bool
	SpeedMbps  uint64
	Selected   string // "selected", "standby", "unselected"
	Aggregator int    // 0 when unselected
	Mux        string // DETACHED, WAITING, ATTACHED, COLLECTING, DISTRIBUTING
	Rx         string // CURRENT, EXPIRED, DEFAULTED, PORT_DISABLED
	Actor      Info
	Partner    Info // Partner_Oper_*; State.Sync is our recordPDU verdict
	// Collecting and Distributing are what the data path must do: the mux
	// state, or true for every fallback port (in fallback the lagg
	// transmits on one of them: where the partner's traffic arrives).
	Collecting, Distributing bool
	Standby                  bool // STANDBY in its aggregator (max ports, speed)
	Fallback                 bool // collects and may transmit as a fallback port
	// Looped: our own LACPDUs come back on this port (cabled to another
	// port of ours, or reflected). It carries no traffic, also not in
	// fallback, until the link goes down or 90 s pass without one.
	Looped                   bool
	ActorChurn, PartnerChurn string // NO_CHURN, CHURN_MONITOR, CHURN
	Counters                 Counters
}

// AggregatorStatus describes one aggregator (one partner system and key).
type AggregatorStatus struct {
	ID      int
	Partner SystemKey
	Ports   []PortID // selected and standby, in port ID order
	Active  bool
}

// Status is a snapshot of the whole engine.
type Status struct {
	Generation   uint64
	Actor        SystemKey
	Active       int       // active aggregator ID, 0 if none
	Partner      SystemKey // partner of the active aggregator
	Distributing int       // distributing ports in the active aggregator
	// Up is what the lagg link should be: at least MinPorts ports
	// distributing, or a fallback port in use. Below MinPorts the ports
	// keep distributing; the lagg is expected to drop transmit traffic.
	Up       bool
	Fallback bool
	// FallbackPort is, in fallback, the best port (by priority, then
	// ID): it transmits until the partner's traffic arrives elsewhere.
	FallbackPort PortID
	// Select is the aggregator selection policy: stable, bandwidth or
	// count.
	Select string
	// PartnerSystems is how many partner systems (system priority, MAC
	// and key) the ports with a partner see. Above 1 is an alarm,
	// PartnerMismatch: some links go to another device or group (a
	// miscabled or rogue link); only the active aggregator carries
	// traffic. PartnerMismatches counts its raises.
	PartnerSystems    int
	PartnerMismatch   bool
	PartnerMismatches uint64
	// LoopedPorts counts the ports that are looped (PortStatus.Looped).
	LoopedPorts   int
	Aggregators   []AggregatorStatus // in creation order
	Ports         []PortStatus       // in port ID order
	RxUnknownPort uint64             // frames for ports not in the engine
}

// Port returns the status of one port.
func (e *Engine) Port(id PortID) (PortStatus, bool) {
	p := e.port(id)
	if p == nil {
		return PortStatus{}, false
	}
	return e.portStatus(p), true
}

func (e *Engine) portStatus(p *port) PortStatus {
	v := e.view(p)
	return PortStatus{
		ID:           p.id,
		LinkUp:       p.linkUp,
		SpeedMbps:    p.speed,
		Selected:     selNames[p.sel],
		Aggregator:   v.agg,
		Mux:          muxNames[p.mux],
		Rx:           rxNames[p.rx],
		Actor:        e.actorInfo(p),
		Partner:      p.partner,
		Collecting:   v.coll,
		Distributing: v.dist,
		Standby:      p.sel == standby,
		Fallback:     v.fallback,
		Looped:       p.looped,
		ActorChurn:   churnNames[p.actorChurn],
		PartnerChurn: churnNames[p.partnerChurn],
		Counters:     p.c,
	}
}

// Status returns a snapshot of the engine.
func (e *Engine) Status() Status {
	s := Status{
		Generation:        e.gen,
		Actor:             SystemKey{e.cfg.SystemPriority, e.cfg.SystemMAC, e.cfg.Key},
		Up:                e.up,
		Fallback:          e.fallback,
		Select:            e.cfg.Select.String(),
		PartnerSystems:    e.partnerSystems,
		PartnerMismatch:   e.partnerSystems > 1,
		PartnerMismatches: e.mismatches,
		RxUnknownPort:     e.rxUnknownPort,
		Ports:             make([]PortStatus, 0, len(e.ports)),
	}
	if e.fbBest != nil {
		s.FallbackPort = e.fbBest.id
	}
	if e.active != nil {
		s.Active = e.active.id
		s.Partner = e.active.key.partner
	}
	for _, a := range e.aggs {
		as := AggregatorStatus{ID: a.id, Partner: a.key.partner, Active: a == e.active}
		for _, p := range e.ports {
			if p.agg == a {
				as.Ports = append(as.Ports, p.id)
			}
		}
		s.Aggregators = append(s.Aggregators, as)
	}
	for _, p := range e.ports {
		ps := e.portStatus(p)
		if p.mux == muxDistributing {
			s.Distributing++
		}
		if p.looped {
			s.LoopedPorts++
		}
		s.Ports = append(s.Ports, ps)
	}
	return s
}

// Alarms is what a remote partner can raise in the engine, for an owner
// that logs or reports it without building a Status.
type Alarms struct {
	PartnerSystems int // as Status.PartnerSystems; > 1 is the mismatch alarm
	Mismatches     uint64
	LoopedPorts    int
	Loops          uint64 // ports becoming looped, all ports
}

// Alarms returns the current alarms. It allocates nothing.
func (e *Engine) Alarms() Alarms {
	a := Alarms{PartnerSystems: e.partnerSystems, Mismatches: e.mismatches}
	for _, p := range e.ports {
		if p.looped {
			a.LoopedPorts++
		}
		a.Loops += p.c.Loops
	}
	return a
}

// FallbackPort returns the best fallback port; ok is false when the engine
// is not in fallback.
func (e *Engine) FallbackPort() (id PortID, ok bool) {
	if !e.fallback || e.fbBest == nil {
		return 0, false
	}
	return e.fbBest.id, true
}
