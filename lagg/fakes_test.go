package lagg_test

import (
	"errors"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

var errMTURefused = errors.New("fake: MTU refused")

// refusingPort is a wire end that refuses MTUs above max.
type refusingPort struct {
	*linkeptest.WireEnd
	max uint32
}

func (p *refusingPort) SetPortMTU(mtu uint32) error {
	if mtu > p.max {
		return errMTURefused
	}
	return p.WireEnd.SetPortMTU(mtu)
}

// goneablePort is a wire end whose interface can vanish (linkep.Gone).
type goneablePort struct {
	keptPort
	mu sync.Mutex
	// +checklocks:mu
	h func(linkep.Event)
}

func (p *goneablePort) SetEventHandler(fn func(linkep.Event)) {
	p.mu.Lock()
	p.h = fn
	p.mu.Unlock()
	p.WireEnd.SetEventHandler(fn)
}

// gone reports the interface as vanished, as a link watcher would.
func (p *goneablePort) gone() {
	p.mu.Lock()
	h := p.h
	p.mu.Unlock()
	if h != nil {
		h(linkep.Event{Kind: linkep.Gone})
	}
}

// sinkPort counts the frames it is given and copies nothing.
type sinkPort struct {
	*linkeptest.WireEnd
	frames atomic.Uint64
}

func (p *sinkPort) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	n := pkts.Len()
	p.frames.Add(uint64(n))
	return n, nil
}

// countingDispatcher counts what the lagg delivers to the stack.
type countingDispatcher struct {
	network, link atomic.Uint64
}

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.network.Add(1)
}

func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *stack.PacketBuffer) {
	d.link.Add(1)
}
