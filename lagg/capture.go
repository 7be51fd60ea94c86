package lagg

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Direction of a captured frame.
type Direction uint8

// Directions.
const (
	In Direction = iota
	Out
)

func (d Direction) String() string {
	if d == In {
		return "in"
	}
	return "out"
}

// CaptureFunc receives a copy of a frame a lagg sent or received: the whole
// Ethernet frame, the port it crossed and when. It runs on the data path
// (and for slow-protocol frames sent by the lagg, on the control path): it
// must be quick and must not call back into the lagg.
type CaptureFunc func(t time.Time, port string, dir Direction, frame []byte)

// capture is one registered sink.
type capture struct {
	port string // "" = every port
	fn   CaptureFunc
}

// captures is the immutable set of sinks read by the data path; nil when
// nothing captures, so the cost of capture when off is one atomic load.
type captures struct {
	list []*capture
}

type captureRegistry struct {
	mu  sync.Mutex
	cur atomic.Pointer[captures]
}

// Capture starts copying frames crossing port (or every port, with "") to
// fn, and returns the function that stops it.
func (l *Lagg) Capture(port string, fn CaptureFunc) (stop func()) {
	c := &capture{port: port, fn: fn}
	r := &l.capture
	r.mu.Lock()
	next := &captures{}
	if cur := r.cur.Load(); cur != nil {
		next.list = slices.Clone(cur.list)
	}
	next.list = append(next.list, c)
	r.cur.Store(next)
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			cur := r.cur.Load()
			if cur == nil {
				return
			}
			list := slices.DeleteFunc(slices.Clone(cur.list), func(x *capture) bool { return x == c })
			if len(list) == 0 {
				r.cur.Store(nil)
				return
			}
			r.cur.Store(&captures{list: list})
		})
	}
}

// deliver copies pkt to every sink interested in port p.
func (cs *captures) deliver(p *port, dir Direction, pkt *stack.PacketBuffer) {
	v := pkt.ToView()
	defer v.Release()
	cs.deliverBytes(p, dir, v.AsSlice())
}

func (cs *captures) deliverBytes(p *port, dir Direction, frame []byte) {
	now := time.Now()
	for _, c := range cs.list {
		if c.port == "" || c.port == p.name {
			c.fn(now, p.name, dir, frame)
		}
	}
}
