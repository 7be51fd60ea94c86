package lagg

import (
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
)

// port is one member of a lagg. It is also the dispatcher its child
// delivers to, which is how the lagg knows where a frame came in.
type port struct {
	// Set when the port joins, never changed. l is for the data path
	// (snapshot, capture, failover clock); protocols never follow it.
	l        *Lagg
	child    linkep.Port
	name     string
	identity string // the interface behind the port, unique on the host
	slot     int    // bit in distribution.rx; fixed for the port's life
	seq      uint64 // join order: breaks priority ties, picks the MAC
	origMAC  tcpip.LinkAddress
	origMTU  uint32

	ctr counters // the data path's, atomics
	txq txQueue  // frames waiting for room on the port (backpressure.go)

	// The control path's: read and written with l.mu held (protocols get
	// ports only inside calls made under it).
	prio   uint16
	linkUp bool  // what the child reports
	active bool  // linkUp after the up/down delay
	delay  Timer // pending up/down delay
	// attached: the child delivers to this port's shim. leaving: the port
	// is out of the lagg's tables and being released.
	attached bool
	leaving  bool
	proto    any // the protocol's per-port state
	// disabled: administratively disabled (admin.go); it counts as link
	// down for the protocol. linkFailures counts link losses; lastChange
	// is the last link change (or the join). base is the counters'
	// baseline, set by ZeroCounters.
	disabled     bool
	linkFailures uint64
	lastChange   time.Time
	base         portBaseline
}

var _ stack.NetworkDispatcher = (*port)(nil)

func (p *port) bit() uint64 { return 1 << p.slot }
