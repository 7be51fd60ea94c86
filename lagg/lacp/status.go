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
	// state, or true for the fallback port.
	Collecting, Distributing bool
	Standby                  bool   // STANDBY in its aggregator (max ports, speed)
	Fallback                 bool   // carries traffic as the fallback port
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
	Up            bool
	Fallback      bool
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
		ActorChurn:   churnNames[p.actorChurn],
		PartnerChurn: churnNames[p.partnerChurn],
		Counters:     p.c,
	}
}

// Status returns a snapshot of the engine.
func (e *Engine) Status() Status {
	s := Status{
		Generation:    e.gen,
		Actor:         SystemKey{e.cfg.SystemPriority, e.cfg.SystemMAC, e.cfg.Key},
		Up:            e.up,
		Fallback:      e.fallback != nil,
		RxUnknownPort: e.rxUnknownPort,
		Ports:         make([]PortStatus, 0, len(e.ports)),
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
		s.Ports = append(s.Ports, ps)
	}
	return s
}
