package lagg

import (
	"sync/atomic"
	"time"
)

// Flow placement for the hashing protocols (loadbalance, lacp).
//
// A plain hash % n spreads flows like balls into bins: 64 flows over 4 ports
// land more than 25% off even about half the time. Instead, the symmetric
// flow hash picks one of flowBuckets buckets, and a bucket is bound to a port
// the first time it carries a frame, choosing the port with the fewest bound
// buckets. New flows thus fill the ports evenly, and a flow stays on its port
// as long as its bucket is bound. Buckets idle for one aging period
// (flowAgeInterval, run by the control goroutine) are unbound, so placement
// follows the flows that are alive rather than history. The table belongs to
// a snapshot: a new set of transmitting ports starts a new table (as hash % n
// would move flows too); a rebuild that keeps the same ports keeps it.
//
// Everything here is lock-free and allocation-free: one atomic load on the
// common path, a CAS when a bucket is first bound or first used in an aging
// period.
const (
	flowBuckets     = 256
	flowUsed        = 1 << 31 // set by the data path, cleared by aging
	flowPortMask    = 0xff    // port index + 1; 0 = unbound
	flowAgeInterval = 10 * time.Second
)

type flowTable struct {
	bucket [flowBuckets]atomic.Uint32
	bound  [MaxPorts]atomic.Int32 // buckets bound to each transmit index
}

// port returns the transmit index for hash among n ports, binding its
// bucket if needed.
func (ft *flowTable) port(hash uint32, n int) int {
	b := &ft.bucket[hash%flowBuckets]
	for {
		v := b.Load()
		if idx := v & flowPortMask; idx != 0 && int(idx) <= n {
			if v&flowUsed == 0 {
				b.CompareAndSwap(v, v|flowUsed)
			}
			return int(idx) - 1
		}
		best := 0
		for i := 1; i < n; i++ {
			if ft.bound[i].Load() < ft.bound[best].Load() {
				best = i
			}
		}
		if b.CompareAndSwap(v, uint32(best+1)|flowUsed) {
			ft.bound[best].Add(1)
			return best
		}
	}
}

// age unbinds the buckets that carried nothing since the last call and
// clears the used mark of the others.
func (ft *flowTable) age() {
	for i := range ft.bucket {
		b := &ft.bucket[i]
		v := b.Load()
		switch {
		case v == 0:
		case v&flowUsed != 0:
			b.CompareAndSwap(v, v&^flowUsed)
		default:
			if b.CompareAndSwap(v, 0) {
				ft.bound[v&flowPortMask-1].Add(-1)
			}
		}
	}
}
