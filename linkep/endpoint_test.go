package linkep_test

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/link/channel"

	"github.com/ulagg/ulagg/linkep"
)

// mtuCapped is an endpoint that cannot go above max.
type mtuCapped struct {
	*channel.Endpoint
	max uint32
}

func (e *mtuCapped) SetMTU(mtu uint32) {
	if mtu <= e.max {
		e.Endpoint.SetMTU(mtu)
	}
}

func TestEndpointPort(t *testing.T) {
	if _, err := linkep.NewEndpointPort(channel.New(1, 1500, ""), linkep.EndpointOptions{}); err == nil {
		t.Error("NewEndpointPort without a name: got nil error")
	}
	ep := &mtuCapped{Endpoint: channel.New(8, 1500, "\x02\x00\x00\x00\x00\x01"), max: 9000}
	p, err := linkep.NewEndpointPort(ep, linkep.EndpointOptions{Name: "r0", LinkUp: true, SpeedMbps: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if p.Name() != "r0" || !p.LinkUp() || p.SpeedMbps() != 1000 {
		t.Errorf("got name %q up %v speed %d, want r0 true 1000", p.Name(), p.LinkUp(), p.SpeedMbps())
	}
	var evs []linkep.Event
	p.SetEventHandler(func(ev linkep.Event) { evs = append(evs, ev) })
	p.SetLink(true) // no change: no event
	p.SetLink(false)
	p.SetLink(true)
	p.Gone()
	p.Gone()
	p.SetLink(true) // gone for good
	want := []linkep.Event{{Kind: linkep.LinkChanged, Up: false}, {Kind: linkep.LinkChanged, Up: true}, {Kind: linkep.LinkChanged, Up: false}, {Kind: linkep.Gone}}
	if len(evs) != len(want) {
		t.Fatalf("events: got %v, want %v", evs, want)
	}
	for i := range want {
		if evs[i] != want[i] {
			t.Errorf("event %d: got %v, want %v", i, evs[i], want[i])
		}
	}
	if p.LinkUp() {
		t.Error("LinkUp after Gone: got true")
	}

	if err := p.SetPortMTU(4000); err != nil || ep.MTU() != 4000 {
		t.Errorf("SetPortMTU(4000): got %v, endpoint MTU %d", err, ep.MTU())
	}
	if err := p.SetPortMTU(9216); err == nil {
		t.Error("SetPortMTU above what the endpoint takes: got nil error")
	}
	p.Join("lagg0")
	p.SetMTU(1280) // the lagg owns the MTU now
	if got := ep.MTU(); got != 4000 {
		t.Errorf("SetMTU while joined: endpoint MTU %d, want 4000 kept", got)
	}
	p.Leave()
	p.SetMTU(1280)
	if got := ep.MTU(); got != 1280 {
		t.Errorf("SetMTU after Leave: endpoint MTU %d, want 1280", got)
	}
}
