package lagg

import (
	"math/bits"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// Slow-protocol frames (EtherType 0x8809: LACPDUs and Marker PDUs) on
// their way from the ports' receive goroutines to the control goroutine.
//
// A frame is validated where it arrives, before anything is copied or
// queued (slowClassify): one that is not a well-formed LACPDU or Marker PDU,
// or carries an illegal subtype, is counted as DropControlMalformed and
// dropped at once; another slow protocol (OAM, ESMC) as DropControlFrame.
// What is left is queued on the port's own small queues, one for LACPDUs
// and one for markers, so a flood on one port costs only that port's
// frames. A full LACPDU queue drops its oldest (the newest PDU carries the
// partner's current state); a full marker queue drops the new one. Either
// counts as DropControlQueue.
//
// The control goroutine serves the ports in turn, one frame each: first
// every queued LACPDU, round-robin over the ports, then markers. It handles
// at most slowBatch frames before it looks at its timers again.

const (
	slowLACPQueueLen   = 4
	slowMarkerQueueLen = 2
	// maxSlowFrame bounds a slow-protocol frame. 802.3 Annex 57A caps them
	// at 128 octets; this leaves room for 802.1AX version 2 TLVs.
	maxSlowFrame = 512
	// slowBatch is how many frames the control goroutine handles in a row.
	slowBatch = 64

	// 802.3 Annex 57A.4: subtypes 1..10 are assigned; 0 and 11..255 are
	// illegal and such frames are discarded.
	slowSubtypeMax = 10
)

// slowKind is a queue of a port, in the order served.
type slowKind int

const (
	slowLACP slowKind = iota
	slowMarker
	numSlowKinds
)

// queueLen is the length of a port's queue of kind k.
func (k slowKind) queueLen() int {
	if k == slowLACP {
		return slowLACPQueueLen
	}
	return slowMarkerQueueLen
}

// slowClassify says what frame is: a LACPDU or Marker PDU to queue (ok), or
// the reason to drop it now. It allocates nothing.
func slowClassify(frame []byte) (kind slowKind, drop DropReason, ok bool) {
	if len(frame) <= header.EthernetMinimumSize || len(frame) > maxSlowFrame {
		return 0, DropControlMalformed, false
	}
	switch st := frame[header.EthernetMinimumSize]; {
	case st == lacp.SubtypeLACP:
		if _, err := lacp.DecodeLACPDU(frame); err != nil {
			return 0, DropControlMalformed, false
		}
		return slowLACP, 0, true
	case st == lacp.SubtypeMarker:
		if _, err := lacp.DecodeMarker(frame); err != nil {
			return 0, DropControlMalformed, false
		}
		return slowMarker, 0, true
	case st == 0 || st > slowSubtypeMax:
		return 0, DropControlMalformed, false
	}
	return 0, DropControlFrame, false
}

// slowFrame is a queued frame and the port it came in on.
type slowFrame struct {
	port  *port
	frame []byte
}

type slowRing struct {
	buf     [slowLACPQueueLen]slowFrame
	head, n int
}

func (r *slowRing) push(f slowFrame, limit int, dropOldest bool) (dropped bool) {
	if r.n == limit {
		if !dropOldest {
			return true
		}
		r.buf[r.head] = slowFrame{}
		r.head = (r.head + 1) % len(r.buf)
		r.n--
		dropped = true
	}
	r.buf[(r.head+r.n)%len(r.buf)] = f
	r.n++
	return dropped
}

func (r *slowRing) pop() (slowFrame, bool) {
	if r.n == 0 {
		return slowFrame{}, false
	}
	f := r.buf[r.head]
	r.buf[r.head] = slowFrame{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return f, true
}

// slowQueue holds the frames of the port in one slot. A port keeps its slot
// until it is released, so a frame of a port that left is recognised by its
// port (leaving) and dropped when served.
type slowQueue struct {
	mu sync.Mutex
	// +checklocks:mu
	q [numSlowKinds]slowRing
}

// slowQueues is the lagg's set of them. pending has bit s of kind k set
// while the queue of slot s holds a frame of kind k; it changes only with
// that queue's mu held. kick wakes the control goroutine.
type slowQueues struct {
	q       [MaxPorts]slowQueue
	pending [numSlowKinds]atomicBits
	kick    chan struct{}
	next    int // the slot served first next time; the control goroutine's
}

// controlInput validates a slow-protocols frame that arrived on p and
// queues it for the control goroutine, or drops it.
func (l *Lagg) controlInput(p *port, pkt *stack.PacketBuffer) {
	if cs := l.capture.cur.Load(); cs != nil {
		cs.deliver(p, In, pkt)
	}
	var b [maxSlowFrame + 1]byte
	n := peekFrame(pkt, b[:])
	kind, reason, ok := slowClassify(b[:n])
	if !ok {
		p.ctr.drop(reason, 1)
		return
	}
	queued, dropped := l.enqueueSlow(kind, slowFrame{port: p, frame: append([]byte(nil), b[:n]...)})
	if dropped {
		p.ctr.drop(DropControlQueue, 1)
	}
	if queued {
		p.ctr.rx(n)
		select {
		case l.slowQ.kick <- struct{}{}:
		default:
		}
	}
}

// enqueueSlow puts f on its port's queue of kind. queued: f is on the queue;
// dropped: a frame was dropped for it (the oldest LACPDU, or f itself).
func (l *Lagg) enqueueSlow(kind slowKind, f slowFrame) (queued, dropped bool) {
	slot := f.port.slot
	sq := &l.slowQ.q[slot]
	sq.mu.Lock()
	defer sq.mu.Unlock()
	dropOldest := kind == slowLACP
	dropped = sq.q[kind].push(f, kind.queueLen(), dropOldest)
	queued = !dropped || dropOldest
	if queued {
		l.slowQ.pending[kind].set(slot)
	}
	return queued, dropped
}

// peekFrame copies pkt's whole frame, Ethernet header included, into dst
// and returns its length (at most len(dst)).
func peekFrame(pkt *stack.PacketBuffer, dst []byte) int {
	vl, skip := pkt.AsViewList()
	n := 0
	for v := vl.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		n += copy(dst[n:], b[skip:])
		skip = 0
	}
	return n
}

// nextSlow takes the next frame to serve: the queued LACPDU of the first
// slot with one from next on, else likewise a marker.
func (l *Lagg) nextSlow() (slowFrame, bool) {
	qs := &l.slowQ
	for kind := range numSlowKinds {
		for {
			m := qs.pending[kind].load()
			if m == 0 {
				break
			}
			// The first set bit at or after next, wrapping around.
			rot := bits.RotateLeft64(m, -qs.next)
			slot := (qs.next + bits.TrailingZeros64(rot)) % MaxPorts
			sq := &qs.q[slot]
			sq.mu.Lock()
			f, ok := sq.q[kind].pop()
			if sq.q[kind].n == 0 {
				qs.pending[kind].clear(slot)
			}
			sq.mu.Unlock()
			if ok {
				qs.next = (slot + 1) % MaxPorts
				return f, true
			}
		}
	}
	return slowFrame{}, false
}

// serveSlow hands queued frames to the protocol, at most slowBatch of them;
// if more are left it wakes itself again so timers get their turn first.
func (l *Lagg) serveSlow() {
	for range slowBatch {
		f, ok := l.nextSlow()
		if !ok {
			return
		}
		l.mu.Lock()
		if !f.port.leaving && !l.closed {
			c := l.ctxLocked()
			if !l.proto.input(c, f.port, f.frame) {
				f.port.ctr.drop(DropControlFrame, 1)
			}
			l.finishLocked(c)
		}
		l.mu.Unlock()
	}
	for kind := range numSlowKinds {
		if l.slowQ.pending[kind].load() != 0 {
			select {
			case l.slowQ.kick <- struct{}{}:
			default:
			}
			return
		}
	}
}

// drainSlow empties every queue (Close).
func (l *Lagg) drainSlow() {
	for {
		if _, ok := l.nextSlow(); !ok {
			return
		}
	}
}

// atomicBits is a set of slots.
type atomicBits struct{ v atomic.Uint64 }

func (b *atomicBits) set(i int)    { b.v.Or(1 << i) }
func (b *atomicBits) clear(i int)  { b.v.And(^(uint64(1) << i)) }
func (b *atomicBits) load() uint64 { return b.v.Load() }
