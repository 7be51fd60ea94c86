package stack_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	ustack "github.com/ulagg/ulagg/stack"
)

// A router that already has its own Ethernet endpoints (here gVisor channel
// endpoints; fdbased, sharedmem or xdp ones work the same) aggregates them
// with linkep.NewEndpointPort, feeds their link state from its own link
// watcher with SetLink, and learns of failovers from the lagg's events
// instead of polling.
func Example_aggregateOwnEndpoints() {
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Two cables: each end is an endpoint the router already had.
	type cable struct{ a, b *channel.Endpoint }
	cables := []cable{
		{channel.New(64, 1500, "\x02\x00\x00\x00\x01\x01"), channel.New(64, 1500, "\x02\x00\x00\x00\x02\x01")},
		{channel.New(64, 1500, "\x02\x00\x00\x00\x01\x02"), channel.New(64, 1500, "\x02\x00\x00\x00\x02\x02")},
	}
	for _, c := range cables {
		go shuttle(ctx, c.a, c.b)
		go shuttle(ctx, c.b, c.a)
	}

	events := make(chan lagg.Event, 16)
	router := func(name, addr string, eps ...*channel.Endpoint) (*gstack.Stack, *lagg.Lagg, []*linkep.EndpointPort) {
		opts := lagg.DefaultOptions(name)
		opts.Proto = lagg.ProtoFailover
		opts.Logger = quiet
		l, err := lagg.New(opts)
		if err != nil {
			panic(err)
		}
		var ports []*linkep.EndpointPort
		for i, ep := range eps {
			p, err := linkep.NewEndpointPort(ep, linkep.EndpointOptions{Name: fmt.Sprintf("%s.%d", name, i), LinkUp: true})
			if err != nil {
				panic(err)
			}
			if err := l.AddPort(p, uint16(1000*(i+1))); err != nil {
				panic(err)
			}
			ports = append(ports, p)
		}
		s, err := ustack.NewNetstack()
		if err != nil {
			panic(err)
		}
		if err := ustack.AddInterface(s, 1, name, l, []netip.Prefix{netip.MustParsePrefix(addr)}); err != nil {
			panic(err)
		}
		l.SetAnnouncer(func() { _ = ustack.Announce(s, 1) })
		return s, l, ports
	}
	s1, l1, ports1 := router("r1", "10.7.0.1/24", cables[0].a, cables[1].a)
	s2, l2, ports2 := router("r2", "10.7.0.2/24", cables[0].b, cables[1].b)
	l1.SetEventHandler(func(ev lagg.Event) {
		if ev.Kind == lagg.EventFailover {
			events <- ev
		}
	})
	defer func() {
		for _, s := range []*gstack.Stack{s1, s2} {
			s.Close()
			s.Wait()
		}
		l1.Close()
		l2.Close()
	}()

	// r2 listens for datagrams; r1 sends one before and one after a cable pull.
	rx, err := gonet.DialUDP(s2, &tcpip.FullAddress{NIC: 1, Port: 9}, nil, ipv4.ProtocolNumber)
	if err != nil {
		panic(err)
	}
	defer rx.Close()
	send := func(msg string) {
		tx, err := gonet.DialUDP(s1, nil, &tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 7, 0, 2}), Port: 9}, ipv4.ProtocolNumber)
		if err != nil {
			panic(err)
		}
		defer tx.Close()
		buf := make([]byte, 64)
		for range 50 { // the first datagram waits for ARP
			_, _ = tx.Write([]byte(msg))
			_ = rx.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if n, err := rx.Read(buf); err == nil {
				fmt.Printf("r2 got %q; r1 transmits on %s\n", buf[:n], l1.Status().TxPort)
				return
			}
		}
		panic("no datagram arrived")
	}
	send("before")
	// The router's link watcher saw cable 0 go down at both ends.
	ports1[0].SetLink(false)
	ports2[0].SetLink(false)
	ev := <-events
	fmt.Printf("event: %s from %s to %s\n", ev.Kind, ev.From, ev.Port)
	send("after")
	// Output:
	// r2 got "before"; r1 transmits on r1.0
	// event: failover from r1.0 to r1.1
	// r2 got "after"; r1 transmits on r1.1
}

// shuttle carries frames from one endpoint to the other as a cable would:
// what a lagg writes is a whole frame; what it receives has the Ethernet
// header consumed.
func shuttle(ctx context.Context, from, to *channel.Endpoint) {
	for {
		pkt := from.ReadContext(ctx)
		if pkt == nil {
			return
		}
		in := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: pkt.ToBuffer()})
		pkt.DecRef()
		if linkep.ParseEthernetHeader(in) {
			to.InjectInbound(in.NetworkProtocolNumber, in)
		}
		in.DecRef()
	}
}
