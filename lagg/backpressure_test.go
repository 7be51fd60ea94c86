package lagg_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// fullPort is a wire end whose transmit queue is full: it takes no frame
// while full is set, answering as a qdisc at its limit does (ENOBUFS), and
// takes at most room frames per call when room is not 0.
type fullPort struct {
	*linkeptest.WireEnd
	mu sync.Mutex
	// +checklocks:mu
	full bool
	// +checklocks:mu
	room int
	// +checklocks:mu
	refused int
	// +checklocks:mu
	taken int
	// +checklocks:mu
	srcPorts []uint16 // TCP source port of each frame taken
}

func (p *fullPort) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.full {
		p.refused++
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	n := pkts.Len()
	var err tcpip.Error
	if p.room > 0 && n > p.room {
		n, err = p.room, &tcpip.ErrWouldBlock{}
	}
	for _, pkt := range pkts.AsSlice()[:n] {
		p.srcPorts = append(p.srcPorts, header.TCP(pkt.TransportHeader().Slice()).SourcePort())
	}
	p.taken += n
	return n, err
}

func (p *fullPort) order() []uint16 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.srcPorts)
}

func (p *fullPort) set(full bool, room int) {
	p.mu.Lock()
	p.full, p.room = full, room
	p.mu.Unlock()
}

func (p *fullPort) counts() (refused, taken int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused, p.taken
}

func newFullPortLagg(t *testing.T) (*lagg.Lagg, *fullPort) {
	t.Helper()
	return newFullPortLaggOn(t, nil)
}

// newFullPortLaggOn is newFullPortLagg with the lagg on clk (nil: the
// real clock).
func newFullPortLaggOn(t *testing.T, clk lagg.Clock) (*lagg.Lagg, *fullPort) {
	t.Helper()
	id := nextID()
	o := options("bp", "failover")
	o.Clock = clk
	l, err := lagg.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	fp := &fullPort{WireEnd: newWire(id, 0).A}
	if err := l.AddPort(fp, lagg.DefaultPriority); err != nil {
		t.Fatal(err)
	}
	return l, fp
}

// sendAll writes frames through l and returns them; they are released
// when the test ends.
func sendAll(t *testing.T, l *lagg.Lagg, n int, size int) []*stack.PacketBuffer {
	t.Helper()
	var pkts []*stack.PacketBuffer
	for i := range n {
		pkt := tcp4(uint16(40000+i), 80).packet()
		if size > pkt.Size() {
			pkt.Data().AppendView(buffer.NewViewSize(size - pkt.Size()))
		}
		t.Cleanup(pkt.DecRef)
		pkts = append(pkts, pkt)
		var list stack.PacketBufferList
		list.PushBack(pkt)
		if n, err := l.WritePackets(list); n != 1 || err != nil {
			t.Fatalf("WritePackets of frame %d: %d, %v; want 1, nil (held)", i, n, err)
		}
	}
	return pkts
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestBackpressureHoldsFrames: frames a full port refuses are held and
// sent, in order, once it drains: the stack sees them sent, and the
// port's counters show tx waits, not drops. Before backpressure each
// refusal was a tx-error drop the stack never heard of.
func TestBackpressureHoldsFrames(t *testing.T) {
	l, fp := newFullPortLagg(t)
	fp.set(true, 0)
	pkts := sendAll(t, l, 5, 0)
	// The drain goroutine found the port still full and waited: only then
	// does it get room (a fixed sleep here could outlast its budget on a
	// loaded machine).
	eventually(t, "a tx wait", func() bool { st := l.Status(); return st.Port(fp.Name()).Counters.TxWaits > 0 })
	fp.set(false, 2) // drains two frames per call
	eventually(t, "the held frames to be sent", func() bool { _, taken := fp.counts(); return taken == len(pkts) })
	refused, _ := fp.counts()
	if refused == 0 {
		t.Errorf("the port refused nothing: the test's premise failed")
	}
	if got := fp.order(); !slices.Equal(got, []uint16{40000, 40001, 40002, 40003, 40004}) {
		t.Errorf("frames left in the order %v, want the order they were written", got)
	}
	eventually(t, "the counters", func() bool { st := l.Status(); return st.Port(fp.Name()).Counters.TxFrames == uint64(len(pkts)) })
	st := l.Status()
	c := st.Port(fp.Name()).Counters
	if c.Drop(lagg.DropTxError) != 0 || c.Drop(lagg.DropTxQueueFull) != 0 || c.TxWaits == 0 {
		t.Errorf("port counters: tx-error drops %d, tx-queue-full drops %d, tx waits %d; want 0, 0, > 0",
			c.Drop(lagg.DropTxError), c.Drop(lagg.DropTxQueueFull), c.TxWaits)
	}
	if st.Counters.TxWaits != c.TxWaits {
		t.Errorf("lagg tx waits %d, want the port's %d", st.Counters.TxWaits, c.TxWaits)
	}
	// Drained, the port is written directly again.
	sendAll(t, l, 1, 0)
	if _, taken := fp.counts(); taken != len(pkts)+1 {
		t.Errorf("after the drain: the port took %d frames, want %d", taken, len(pkts)+1)
	}
}

// TestBackpressureQueueCap: the queue holds at most about a megabyte; what
// does not fit is dropped and counted (tx-queue-full).
func TestBackpressureQueueCap(t *testing.T) {
	l, fp := newFullPortLagg(t)
	fp.set(true, 0)
	var list stack.PacketBufferList
	const frames, size = 40, 64 << 10
	for i := range frames {
		pkt := tcp4(uint16(40000+i), 80).packet()
		pkt.Data().AppendView(buffer.NewViewSize(size - pkt.Size()))
		list.PushBack(pkt)
	}
	defer list.DecRef()
	n, err := l.WritePackets(list)
	if n >= frames || err == nil {
		t.Fatalf("WritePackets of %d 64 KiB frames to a full port: %d, %v; want some refused", frames, n, err)
	}
	st := l.Status()
	c := st.Port(fp.Name()).Counters
	if held, dropped := n, int(c.Drop(lagg.DropTxQueueFull)); held < 8 || held > 17 || held+dropped != frames {
		t.Errorf("held %d, dropped %d (tx-queue-full); want 8..17 held (1 MiB) and the rest dropped", held, dropped)
	}
	fp.set(false, 0)
	eventually(t, "the held frames to be sent", func() bool { _, taken := fp.counts(); return taken == n })
}

// TestBackpressureBudgetIsTime: frames keep arriving while the port is
// full for far less than the no-progress budget; each wakes the drain
// goroutine early, and none of that may count as waiting the budget out.
// The budget used to add a full pause per wake, so forty quick wakes
// "waited" 25 ms and the whole queue was dropped as tx errors.
func TestBackpressureBudgetIsTime(t *testing.T) {
	// The lagg's clock stands still: only pauses counted as time could
	// run the budget out.
	l, fp := newFullPortLaggOn(t, testkit.NewFakeClock(time.Unix(1000, 0)))
	fp.set(true, 0)
	const frames = 60
	for range frames {
		refused, _ := fp.counts()
		sendAll(t, l, 1, 0)
		// One more refused retry per frame: the drain goroutine woke.
		eventually(t, "the drain goroutine to retry", func() bool { r, _ := fp.counts(); return r > refused })
	}
	fp.set(false, 0)
	eventually(t, "the held frames to be sent or dropped", func() bool {
		_, taken := fp.counts()
		st := l.Status()
		return taken+int(st.Port(fp.Name()).Counters.Drop(lagg.DropTxError)) == frames
	})
	st := l.Status()
	if c := st.Port(fp.Name()).Counters; c.Drop(lagg.DropTxError) != 0 {
		t.Fatalf("%d frames arrived while the port was full, none of the budget's time passed: tx-error drops %d, want 0",
			frames, c.Drop(lagg.DropTxError))
	}
	eventually(t, "the counters", func() bool { st := l.Status(); return st.Port(fp.Name()).Counters.TxFrames == frames })
}

// TestBackpressureBounded: a port that never drains holds its frames for
// a bounded time, then drops and counts them.
func TestBackpressureBounded(t *testing.T) {
	l, fp := newFullPortLagg(t)
	fp.set(true, 0)
	sendAll(t, l, 3, 0)
	eventually(t, "the held frames to be dropped", func() bool {
		st := l.Status()
		return st.Port(fp.Name()).Counters.Drop(lagg.DropTxError) == 3
	})
	st := l.Status()
	if c := st.Port(fp.Name()).Counters; c.TxWaits == 0 || c.TxFrames != 0 {
		t.Errorf("tx waits %d, tx frames %d; want > 0 and 0", c.TxWaits, c.TxFrames)
	}
}

// TestBackpressureRemovePort: a port that leaves with frames held drops
// them (the leak checker in TestMain finds any buffer kept) and its drain
// goroutine ends.
func TestBackpressureRemovePort(t *testing.T) {
	l, fp := newFullPortLagg(t)
	fp.set(true, 0)
	sendAll(t, l, 3, 0)
	if err := l.RemovePort(fp.Name()); err != nil {
		t.Fatal(err)
	}
	st := l.Status()
	if c := st.Counters; c.Drop(lagg.DropTxError) != 3 {
		t.Errorf("after removing the port: lagg tx-error drops %d, want the 3 held frames", c.Drop(lagg.DropTxError))
	}
}
