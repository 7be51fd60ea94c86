package linkep

import (
	"fmt"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// EndpointOptions describe an Ethernet endpoint to be used as a port.
type EndpointOptions struct {
	// Name names the port (required); it must be unique among the ports of
	// the process's laggs, as an interface name is.
	Name string
	// LinkUp is the link state when the port is made; SetLink changes it.
	LinkUp bool
	// SpeedMbps is the link speed for LACP, 0 if unknown.
	SpeedMbps uint64
}

// EndpointPort turns any Ethernet stack.LinkEndpoint — gVisor's fdbased,
// sharedmem or xdp endpoints, or an embedder's own — into a Port, so a
// router can aggregate the endpoints it already has. The endpoint must
// deliver received frames with the Ethernet header consumed and the
// EtherType as the protocol, and send the frames it is given as they are
// (as gVisor's fdbased does with EthernetHeader set); see the package
// documentation.
//
// Link state comes from whatever watches the real link: call SetLink on
// every change and Gone when the link is gone for good. Nothing polls.
type EndpointPort struct {
	stack.LinkEndpoint
	name  string
	speed uint64

	up      atomic.Bool
	gone    atomic.Bool
	handler atomic.Pointer[func(Event)]

	mu sync.Mutex
	// +checklocks:mu
	owner string // the lagg while joined
}

var _ Port = (*EndpointPort)(nil)

// NewEndpointPort wraps ep as a Port.
func NewEndpointPort(ep stack.LinkEndpoint, opts EndpointOptions) (*EndpointPort, error) {
	if ep == nil || opts.Name == "" {
		return nil, fmt.Errorf("an endpoint port needs an endpoint and a name")
	}
	p := &EndpointPort{LinkEndpoint: ep, name: opts.Name, speed: opts.SpeedMbps}
	p.up.Store(opts.LinkUp)
	return p, nil
}

// SetLink reports a change of the link's state to the lagg.
func (p *EndpointPort) SetLink(up bool) {
	if p.gone.Load() || p.up.Swap(up) == up {
		return
	}
	p.emit(Event{Kind: LinkChanged, Up: up})
}

// Gone reports that the link is gone for good: the lagg lets the port go.
func (p *EndpointPort) Gone() {
	if p.gone.Swap(true) {
		return
	}
	if p.up.Swap(false) {
		p.emit(Event{Kind: LinkChanged, Up: false})
	}
	p.emit(Event{Kind: Gone})
}

func (p *EndpointPort) emit(ev Event) {
	if fn := p.handler.Load(); fn != nil {
		(*fn)(ev)
	}
}

// Name implements Port.
func (p *EndpointPort) Name() string { return p.name }

// LinkUp implements Port.
func (p *EndpointPort) LinkUp() bool { return p.up.Load() && !p.gone.Load() }

// SpeedMbps implements Port.
func (p *EndpointPort) SpeedMbps() uint64 { return p.speed }

// SetEventHandler implements Port. Events are delivered on the goroutine
// that calls SetLink or Gone.
func (p *EndpointPort) SetEventHandler(fn func(Event)) {
	if fn == nil {
		p.handler.Store(nil)
		return
	}
	p.handler.Store(&fn)
}

// Join implements Port.
func (p *EndpointPort) Join(owner string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.owner = owner
}

// Leave implements Port.
func (p *EndpointPort) Leave() { p.Join("") }

// SetPortMTU implements Port: the endpoint's SetMTU, checked.
func (p *EndpointPort) SetPortMTU(mtu uint32) error {
	p.LinkEndpoint.SetMTU(mtu)
	if got := p.LinkEndpoint.MTU(); got != mtu {
		return fmt.Errorf("%s: the endpoint kept MTU %d instead of %d", p.name, got, mtu)
	}
	return nil
}

// SetMTU implements stack.LinkEndpoint: ignored while the port is a lagg
// member, whose MTU is the lagg's.
func (p *EndpointPort) SetMTU(mtu uint32) {
	p.mu.Lock()
	joined := p.owner != ""
	p.mu.Unlock()
	if !joined {
		p.LinkEndpoint.SetMTU(mtu)
	}
}
