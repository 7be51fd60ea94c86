package lagg

import (
	"time"

	"github.com/ulagg/ulagg/linkep"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Status is a lagg's state, as `ifconfig lagg0` shows it.
//
// json.Marshal prints StatusJSON (status_json.go, which states the JSON
// conventions). Each field's tag names its key there; a new field needs
// its tag and its field in StatusJSON (TestStatusJSONFields checks).
type Status struct {
	Name         string            `json:"name"`
	Proto        Proto             `json:"proto"`
	MAC          tcpip.LinkAddress `json:"mac"`
	MTU          uint32            `json:"mtu"`
	Up           bool              `json:"up"`
	Hash         HashLayers        `json:"hash"`
	TxPort       string            `json:"tx_port"` // failover: the transmitting port
	Failovers    uint64            `json:"failovers"`
	LastFailover time.Duration     `json:"last_failover_ms"` // carrier loss to the first frame on the new port
	Ports        []PortStatus      `json:"ports"`            // in priority order
	Counters     Counters          `json:"counters"`
	Failover     *FailoverStatus   `json:"rx_all"` // as JSON, its one option
	LACP         *LACPStatus       `json:"lacp"`
	Monitor      *MonitorOptions   `json:"monitor"` // the link monitor's settings; nil when off
}

// PortStatus is one port's state. As for Status, json.Marshal prints
// PortStatusJSON, and each field's tag names its key there.
type PortStatus struct {
	Name      string            `json:"name"`
	Priority  uint16            `json:"priority"`
	Flags     PortFlags         `json:"flags"`
	LinkUp    bool              `json:"link"`   // the port's link
	Active    bool              `json:"active"` // the link after up/down delays
	MTU       uint32            `json:"mtu"`
	MAC       tcpip.LinkAddress `json:"mac"` // the port's original MAC
	SpeedMbps uint64            `json:"speed_mbps"`
	Counters  Counters          `json:"counters"`
	// KernelDrops counts frames the kernel dropped before the port read
	// them (a full socket buffer), for ports that know (linkep.KernelDropper).
	KernelDrops uint64          `json:"kernel_drops"`
	LACP        *LACPPortStatus `json:"lacp"`
	// Disabled: the operator disabled the port (SetPortDisabled); it
	// counts as link down. LinkFailures counts the port's link losses
	// since it joined (Linux bonding's "Link Failure Count"); LastChange is
	// when its link last changed, or when it joined.
	Disabled     bool      `json:"disabled"`
	LinkFailures uint64    `json:"link_failures"`
	LastChange   time.Time `json:"last_change"`
	// Monitor is the link monitor's verdict (nil when it is off).
	Monitor *PortMonitorStatus `json:"monitor"`
}

// FailoverStatus holds failover's options.
type FailoverStatus struct {
	RxAll bool
}

// Status returns the lagg's state.
func (l *Lagg) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.snap.Load()
	st := Status{
		Name:         l.name,
		Proto:        l.cfg.Proto,
		MAC:          l.mac,
		MTU:          l.mtu.Load(),
		Up:           s.dist.up,
		Hash:         l.cfg.Hash,
		Failovers:    l.failovers,
		LastFailover: time.Duration(l.lastFailover.Load()),
		Counters:     l.ctr.snapshot().since(l.admin.base),
	}
	if p := s.dist.primary; p != nil {
		st.TxPort = p.name
	}
	for _, p := range l.ports {
		ps := PortStatus{
			Name:      p.name,
			Priority:  p.prio,
			Flags:     l.proto.portFlags(p, &l.dist),
			LinkUp:    p.linkUp,
			Active:    p.active,
			MTU:       p.child.MTU(),
			MAC:       p.origMAC,
			SpeedMbps: p.child.SpeedMbps(),
			Counters:  p.ctr.snapshot().since(p.base.ctr),
			// admin.go's fields
			Disabled:     p.disabled,
			LinkFailures: p.linkFailures,
			LastChange:   p.lastChange,
		}
		if kd, ok := p.child.(linkep.KernelDropper); ok {
			ps.KernelDrops = kd.KernelDrops()
			ps.KernelDrops -= min(ps.KernelDrops, p.base.kernelDrops)
		}
		st.Counters.merge(ps.Counters)
		st.Ports = append(st.Ports, ps)
	}
	l.proto.status(l.ctxLocked(), &st)
	l.monitorStatusLocked(&st) // monitor_run.go
	return st
}

// Port returns one port's status.
func (st *Status) Port(name string) *PortStatus {
	for i := range st.Ports {
		if st.Ports[i].Name == name {
			return &st.Ports[i]
		}
	}
	return nil
}
