package lagg

import (
	"time"

	"github.com/ulagg/ulagg/linkep"

	"gvisor.dev/gvisor/pkg/tcpip"
)

// Status is a lagg's state, as `ifconfig lagg0` shows it.
type Status struct {
	Name         string
	Proto        Proto
	MAC          tcpip.LinkAddress
	MTU          uint32
	Up           bool
	Hash         HashLayers
	TxPort       string // failover: the transmitting port
	Failovers    uint64
	LastFailover time.Duration // carrier loss to the first frame on the new port
	Ports        []PortStatus  // in priority order
	Counters     Counters
	Failover     *FailoverStatus
	LACP         *LACPStatus
}

// PortStatus is one port's state.
type PortStatus struct {
	Name      string
	Priority  uint16
	Flags     PortFlags
	LinkUp    bool // the port's link
	Active    bool // the link after up/down delays
	MTU       uint32
	MAC       tcpip.LinkAddress // the port's original MAC
	SpeedMbps uint64
	Counters  Counters
	// KernelDrops counts frames the kernel dropped before the port read
	// them (a full socket buffer), for ports that know (linkep.KernelDropper).
	KernelDrops uint64
	LACP        *LACPPortStatus
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
		Counters:     l.ctr.snapshot(),
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
			Counters:  p.ctr.snapshot(),
		}
		if kd, ok := p.child.(linkep.KernelDropper); ok {
			ps.KernelDrops = kd.KernelDrops()
		}
		st.Counters.merge(ps.Counters)
		st.Ports = append(st.Ports, ps)
	}
	l.proto.status(l.ctxLocked(), &st)
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
