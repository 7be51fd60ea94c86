// Package linkeptest holds test support for code that aggregates ports: an
// in-memory Ethernet wire whose ends are linkep.Ports, with cable pulls,
// silent loss and a frame observer.
package linkeptest

import (
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/ulagg/ulagg/linkep"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// wireQueueLen is how many frames a wire end buffers before it drops, like a
// NIC ring. Dropping rather than blocking keeps two stacks that answer each
// other inline from deadlocking on full queues.
const wireQueueLen = 4096

// WireKind is the port kind test binaries register for wire ends, so test
// configurations may name it. A wire end is made by NewWire, never opened by
// name: Open of this kind fails.
const WireKind = "wire"

func init() {
	linkep.RegisterKind(WireKind, func(name string, _ linkep.OpenOptions) (linkep.Port, error) {
		return nil, fmt.Errorf("%s: a wire end is made with linkeptest.NewWire, not opened by name", name)
	})
}

// Wire is an in-memory Ethernet cable with two ends. Each end is a linkep.Port, so
// two gVisor stacks (with or without a lagg) can talk in one process. A test
// can pull the cable (both ends lose carrier, as with a real cable) or make
// it silently stop passing frames while the carrier stays up.
type Wire struct {
	A, B *WireEnd
}

// WireOptions configures NewWire. Zero values give MTU 1500 and no speed.
type WireOptions struct {
	MTU       uint32
	SpeedMbps uint64
	Logger    *slog.Logger
}

// NewWire returns a connected cable whose ends are named nameA and nameB and
// use the MACs macA and macB. The link starts up.
func NewWire(nameA, nameB string, macA, macB tcpip.LinkAddress, opts WireOptions) *Wire {
	if opts.MTU == 0 {
		opts.MTU = 1500
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := newWireEnd(nameA, macA, opts)
	b := newWireEnd(nameB, macB, opts)
	a.peer, b.peer = b, a
	return &Wire{A: a, B: b}
}

// SetLinkUp plugs (true) or pulls (false) the cable; both ends report the
// change to their event handlers before SetLinkUp returns.
func (w *Wire) SetLinkUp(up bool) {
	w.A.setCarrier(up)
	w.B.setCarrier(up)
}

// SetPassing makes the cable pass frames (true) or silently lose every frame
// in both directions while the carrier stays up (false).
func (w *Wire) SetPassing(pass bool) {
	w.A.passing.Store(pass)
	w.B.passing.Store(pass)
}

// SetObserver registers fn to see every frame the wire passes, in either
// direction, as sent (Ethernet header included); nil removes it. fn runs on
// the sender's goroutine and must not keep frame.
func (w *Wire) SetObserver(fn func(from *WireEnd, frame []byte)) {
	if fn == nil {
		w.A.observer.Store(nil)
		w.B.observer.Store(nil)
		return
	}
	w.A.observer.Store(&fn)
	w.B.observer.Store(&fn)
}

// WireEnd is one end of a Wire. It implements Port.
type WireEnd struct {
	name  string
	speed uint64
	log   *slog.Logger
	peer  *WireEnd // set once by NewWire
	// own is the MAC the end was made with. Like a host port, it still
	// receives frames to it after SetLinkAddress (a lagg's link monitor
	// probes with it).
	own tcpip.LinkAddress

	carrier  atomic.Bool
	passing  atomic.Bool // frames sent from this end reach the peer
	observer atomic.Pointer[func(from *WireEnd, frame []byte)]
	inbound  chan *stack.PacketBuffer
	// inMu orders senders (read side) against Close (write side), so no frame
	// is queued on a closed end, where nothing would release it.
	inMu sync.RWMutex
	// +checklocks:inMu
	inClosed bool

	// Counters, read by tests. One field a line: checklocks pairs
	// annotations with fields by position and counts "a, b T" as one.
	TxFrames atomic.Uint64
	RxFrames atomic.Uint64
	Dropped  atomic.Uint64

	mu sync.Mutex
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// +checklocks:mu
	addr tcpip.LinkAddress
	// +checklocks:mu
	mtu uint32
	// +checklocks:mu
	owner string
	// +checklocks:mu
	handler func(linkep.Event)
	// +checklocks:mu
	stop chan struct{}

	wg sync.WaitGroup // the delivery goroutine
}

var _ linkep.Port = (*WireEnd)(nil)

func newWireEnd(name string, mac tcpip.LinkAddress, opts WireOptions) *WireEnd {
	e := &WireEnd{
		name:    name,
		speed:   opts.SpeedMbps,
		log:     opts.Logger,
		inbound: make(chan *stack.PacketBuffer, wireQueueLen),
		addr:    mac,
		own:     mac,
		mtu:     opts.MTU,
	}
	e.carrier.Store(true)
	e.passing.Store(true)
	return e
}

func (e *WireEnd) setCarrier(up bool) {
	if e.carrier.Swap(up) == up {
		return
	}
	e.mu.Lock()
	h := e.handler
	e.mu.Unlock()
	if h != nil {
		h(linkep.Event{Kind: linkep.LinkChanged, Up: up})
	}
}

// Name implements Port.
func (e *WireEnd) Name() string { return e.name }

// LinkUp implements Port.
func (e *WireEnd) LinkUp() bool { return e.carrier.Load() }

// SpeedMbps implements Port.
func (e *WireEnd) SpeedMbps() uint64 { return e.speed }

// SetEventHandler implements Port.
func (e *WireEnd) SetEventHandler(fn func(linkep.Event)) {
	e.mu.Lock()
	e.handler = fn
	e.mu.Unlock()
}

// Join implements Port.
func (e *WireEnd) Join(owner string) {
	e.mu.Lock()
	e.owner = owner
	e.mu.Unlock()
}

// Leave implements Port.
func (e *WireEnd) Leave() { e.Join("") }

// SetPortMTU implements Port.
func (e *WireEnd) SetPortMTU(mtu uint32) error {
	if mtu < header.IPv4MinimumMTU || mtu > 65535 {
		return fmt.Errorf("wire %s: MTU %d out of range %d..65535", e.name, mtu, header.IPv4MinimumMTU)
	}
	e.mu.Lock()
	e.mtu = mtu
	e.mu.Unlock()
	return nil
}

// TrySetMTU changes the MTU as an operator would on the port itself; it is
// refused while the port belongs to a lagg.
func (e *WireEnd) TrySetMTU(mtu uint32) error {
	e.mu.Lock()
	owner := e.owner
	e.mu.Unlock()
	if owner != "" {
		return fmt.Errorf("wire %s: %w %s", e.name, linkep.ErrMTULocked, owner)
	}
	return e.SetPortMTU(mtu)
}

// MTU implements stack.LinkEndpoint.
func (e *WireEnd) MTU() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.mtu
}

// SetMTU implements stack.LinkEndpoint. A member port refuses and logs why.
func (e *WireEnd) SetMTU(mtu uint32) {
	if err := e.TrySetMTU(mtu); err != nil {
		e.log.Warn("MTU change refused", "port", e.name, "mtu", mtu, "err", err)
	}
}

// MaxHeaderLength implements stack.LinkEndpoint.
func (*WireEnd) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// LinkAddress implements stack.LinkEndpoint.
func (e *WireEnd) LinkAddress() tcpip.LinkAddress {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

// SetLinkAddress implements stack.LinkEndpoint.
func (e *WireEnd) SetLinkAddress(addr tcpip.LinkAddress) {
	e.mu.Lock()
	e.addr = addr
	e.mu.Unlock()
}

// Capabilities implements stack.LinkEndpoint. Frames are copied whole, so
// checksums computed by the sender are always present.
func (*WireEnd) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired
}

// ARPHardwareType implements stack.LinkEndpoint.
func (*WireEnd) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint, so a WireEnd can also be a plain
// NIC of a stack without a lagg.
func (*WireEnd) AddHeader(pkt *stack.PacketBuffer) { linkep.AddEthernetHeader(pkt) }

// ParseHeader implements stack.LinkEndpoint.
func (*WireEnd) ParseHeader(pkt *stack.PacketBuffer) bool { return linkep.ParseEthernetHeader(pkt) }

// Attach implements stack.LinkEndpoint. A non-nil dispatcher starts the
// delivery goroutine; nil stops it and waits for it.
func (e *WireEnd) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	if d == nil {
		stop := e.stop
		e.stop = nil
		e.dispatcher = nil
		e.mu.Unlock()
		if stop != nil {
			close(stop)
			e.wg.Wait()
		}
		return
	}
	e.dispatcher = d
	// A closed end is opened again, as a host interface can be.
	e.inMu.Lock()
	e.inClosed = false
	e.inMu.Unlock()
	if e.stop == nil {
		e.stop = make(chan struct{})
		e.wg.Add(1)
		go e.routineDeliver(e.stop)
	}
	e.mu.Unlock()
}

// IsAttached implements stack.LinkEndpoint.
func (e *WireEnd) IsAttached() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.
func (e *WireEnd) Wait() { e.wg.Wait() }

// Close implements stack.LinkEndpoint. It drops queued frames, and frames
// sent to it until it is attached again.
func (e *WireEnd) Close() {
	e.Attach(nil)
	e.inMu.Lock()
	e.inClosed = true
	e.inMu.Unlock()
	for {
		select {
		case pkt := <-e.inbound:
			pkt.DecRef()
		default:
			return
		}
	}
}

// SetOnCloseAction implements stack.LinkEndpoint. A wire never dies on its
// own, so there is nothing to call.
func (*WireEnd) SetOnCloseAction(func()) {}

// WritePackets implements stack.LinkEndpoint. It copies each frame onto the
// peer's queue; the caller keeps its references.
func (e *WireEnd) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := pkts.Len()
	if !e.carrier.Load() {
		e.Dropped.Add(uint64(n))
		return 0, &tcpip.ErrClosedForSend{}
	}
	if !e.passing.Load() {
		e.TxFrames.Add(uint64(n))
		return n, nil
	}
	obs := e.observer.Load()
	for _, pkt := range pkts.AsSlice() {
		if obs != nil {
			v := pkt.ToView()
			(*obs)(e, v.AsSlice())
			v.Release()
		}
		// A fresh packet without header offsets, as a real receiver gets.
		frame := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: pkt.ToBuffer()})
		if !e.peer.enqueue(frame) {
			frame.DecRef()
			e.Dropped.Add(1)
			continue
		}
		e.TxFrames.Add(1)
	}
	return n, nil
}

// enqueue queues a frame unless the end is closed or its queue is full.
func (e *WireEnd) enqueue(frame *stack.PacketBuffer) bool {
	e.inMu.RLock()
	defer e.inMu.RUnlock()
	if e.inClosed {
		return false
	}
	select {
	case e.inbound <- frame:
		return true
	default:
		return false
	}
}

// routineDeliver hands queued frames to the dispatcher, filtering as a NIC does.
func (e *WireEnd) routineDeliver(stop chan struct{}) {
	defer e.wg.Done()
	for {
		select {
		case <-stop:
			return
		case pkt := <-e.inbound:
			e.deliver(pkt)
			pkt.DecRef()
		}
	}
}

func (e *WireEnd) deliver(pkt *stack.PacketBuffer) {
	e.mu.Lock()
	d, addr, mtu := e.dispatcher, e.addr, e.mtu
	e.mu.Unlock()
	if d == nil || !e.carrier.Load() || pkt.Size() > int(mtu)+header.EthernetMinimumSize {
		e.Dropped.Add(1)
		return
	}
	hdr, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize)
	if !ok {
		e.Dropped.Add(1)
		return
	}
	eth := header.Ethernet(hdr)
	dst := eth.DestinationAddress()
	switch {
	case dst == header.EthernetBroadcastAddress:
		pkt.PktType = tcpip.PacketBroadcast
	case header.IsMulticastEthernetAddress(dst):
		pkt.PktType = tcpip.PacketMulticast
	case dst == addr:
		pkt.PktType = tcpip.PacketHost
	case dst == e.own: // a host port's own MAC, not the lagg's (linkep.Port)
		pkt.PktType = tcpip.PacketOtherHost
	default:
		e.Dropped.Add(1) // not for us: a NIC's MAC filter
		return
	}
	pkt.NetworkProtocolNumber = eth.Type()
	e.RxFrames.Add(1)
	d.DeliverNetworkPacket(eth.Type(), pkt)
}
