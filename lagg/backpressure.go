package lagg

import (
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Backpressure. A port whose queue is full (a qdisc at its limit: ENOBUFS;
// a socket buffer full: EAGAIN) cannot take a frame now. gVisor's TCP
// treats a failed link write as sent, so a frame refused is a frame lost:
// a retransmission for the flow, a whole window after a timeout. So a
// refused frame is held instead, in a small byte-capped queue per port,
// and the port's own drain goroutine sends it once the port has room.
// While frames wait, new frames for the port queue behind them, so a
// flow's frames stay in order.
//
// The queue holds frames rather than stalling the writer: the writer is
// one of gVisor's TCP processor goroutines, and one that waits for port A
// stalls the acknowledgements of flows on port B it also serves; in
// TestThroughput's 2-link rows that stall fired spurious retransmission
// timeouts and cost more than the drops it saved (README, "Measured").
// The cap keeps the added delay well under gVisor's 200 ms minimum RTO;
// beyond it frames are dropped and counted (tx-queue-full), which is the
// loss signal TCP's congestion control needs anyway. A port that takes
// nothing for txWaitBudget is not draining (a stuck device), and what it
// holds is dropped and counted as tx errors.
const (
	txQueueBytes  = 1 << 20               // per port
	txQueueFrames = 1024                  // per port (the ring's size)
	txWaitFirst   = 20 * time.Microsecond // a 1500-byte frame at 600 Mbit/s
	txWaitMax     = time.Millisecond      // longest single pause
	txWaitBudget  = 25 * time.Millisecond // without progress
	txDrainBatch  = 64                    // frames per drain write
)

// queueFull reports whether err means the port cannot take frames now but
// will once its queue drains.
func queueFull(err tcpip.Error) bool {
	switch err.(type) {
	case *tcpip.ErrNoBufferSpace, *tcpip.ErrWouldBlock:
		return true
	}
	return false
}

// txQueue is a port's backpressure queue. The data path checks held
// without a lock; everything else is under mu.
type txQueue struct {
	// held is set while frames wait or are being drained: a writer that
	// sees it queues instead of writing.
	held atomic.Bool

	mu sync.Mutex
	// +checklocks:mu
	ring []*stack.PacketBuffer // allocated when first needed
	// +checklocks:mu
	head int
	// +checklocks:mu
	n int // frames queued
	// +checklocks:mu
	bytes int
	// +checklocks:mu
	draining bool // the drain goroutine runs
	// +checklocks:mu
	closed bool
	// wake (cap 1) is made under mu before the drain goroutine first
	// starts, and never changes after.
	// +checklocksignore
	wake chan struct{}
	done sync.WaitGroup
}

// hold queues frames (the caller keeps its references) and returns how
// many it took; what does not fit is the caller's to drop.
func (p *port) hold(frames []*stack.PacketBuffer) int {
	q := &p.txq
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0
	}
	if q.ring == nil {
		q.ring = make([]*stack.PacketBuffer, txQueueFrames)
		q.wake = make(chan struct{}, 1)
	}
	taken := 0
	for _, pkt := range frames {
		size := pkt.Size()
		if q.n == len(q.ring) || (q.n > 0 && q.bytes+size > txQueueBytes) {
			break
		}
		q.ring[(q.head+q.n)%len(q.ring)] = pkt.IncRef()
		q.n++
		q.bytes += size
		taken++
	}
	if taken == 0 {
		return 0
	}
	q.held.Store(true)
	if !q.draining {
		q.draining = true
		q.done.Add(1)
		go p.drain()
	} else {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return taken
}

// take moves up to len(dst) queued frames to dst and returns how many; at
// an empty queue it ends the hold and tells the drain goroutine to stop.
func (q *txQueue) take(dst []*stack.PacketBuffer) (n int, stop bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for n < len(dst) && q.n > 0 {
		pkt := q.ring[q.head]
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
		q.n--
		q.bytes -= pkt.Size()
		dst[n] = pkt
		n++
	}
	if n == 0 {
		// Only now, with nothing queued and nothing in flight, may
		// writers go straight to the port again.
		q.held.Store(false)
		q.draining = false
		return 0, true
	}
	return n, false
}

// drain is the port's drain goroutine: it sends the queued frames in
// order, waiting while the port is full, and returns when the queue is
// empty.
func (p *port) drain() {
	q := &p.txq
	defer q.done.Done()
	var batch [txDrainBatch]*stack.PacketBuffer
	var list stack.PacketBufferList
	pause := time.NewTimer(time.Hour)
	defer pause.Stop()
	for {
		n, stop := q.take(batch[:])
		if stop {
			return
		}
		frames := batch[:n]
		// The budget counts time, not pauses: new frames end a pause
		// early, and counting each one at its full length dropped a
		// queue that had waited a millisecond or two.
		wait, stalledSince := txWaitFirst, time.Time{}
		for len(frames) > 0 {
			for _, pkt := range frames {
				list.PushBack(pkt.IncRef())
			}
			sent, err := p.child.WritePackets(list)
			list.Reset()
			if sent > 0 {
				sentBytes := 0
				for _, pkt := range frames[:sent] {
					sentBytes += pkt.Size()
					pkt.DecRef()
				}
				p.ctr.tx(sent, sentBytes)
				frames = frames[sent:]
				wait, stalledSince = txWaitFirst, time.Time{}
			}
			if len(frames) == 0 {
				break
			}
			if err != nil && !queueFull(err) {
				p.dropHeld(frames, DropTxError)
				break
			}
			now := p.l.clock.Now()
			if stalledSince.IsZero() {
				stalledSince = now
			}
			if now.Sub(stalledSince) >= txWaitBudget || q.isClosed() {
				p.dropHeld(frames, DropTxError)
				p.dropHeld(q.takeAll(), DropTxError)
				break
			}
			p.ctr.txWaits.Add(1)
			// New frames and closeTxQueue both signal wake: a retry
			// comes early, and a close is seen at once.
			pause.Reset(wait)
			select {
			case <-pause.C:
			case <-q.wake:
			}
			wait = min(2*wait, txWaitMax)
		}
		clear(batch[:])
	}
}

// dropHeld releases and counts frames that will not be sent. Once the port
// is leaving they count on the lagg's own counters: the port's were
// already added to them.
func (p *port) dropHeld(frames []*stack.PacketBuffer, r DropReason) {
	if len(frames) == 0 {
		return
	}
	for _, pkt := range frames {
		pkt.DecRef()
	}
	if p.txq.isClosed() {
		p.l.ctr.drop(r, len(frames))
	} else {
		p.ctr.drop(r, len(frames))
	}
}

func (q *txQueue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// takeAll empties the queue and returns what it held.
func (q *txQueue) takeAll() []*stack.PacketBuffer {
	q.mu.Lock()
	defer q.mu.Unlock()
	var all []*stack.PacketBuffer
	for ; q.n > 0; q.n-- {
		all = append(all, q.ring[q.head])
		q.ring[q.head] = nil
		q.head = (q.head + 1) % len(q.ring)
	}
	q.bytes = 0
	return all
}

// closeTxQueue stops the drain goroutine and drops what is still queued;
// the port is leaving. Frames offered afterwards are not taken.
func (p *port) closeTxQueue() {
	q := &p.txq
	q.mu.Lock()
	q.closed = true
	wake := q.wake
	q.mu.Unlock()
	if wake != nil {
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	q.done.Wait()
	p.dropHeld(q.takeAll(), DropTxError)
	q.held.Store(false)
}
