package lagg_test

import (
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/ulagg/ulagg/lagg"
)

var ipVersions = []struct {
	name string
	v6   bool
}{{"tcp4", false}, {"tcp6", true}}

// BenchmarkTxSelect is the per-frame hash and port choice of a loadbalance
// lagg over 4 ports.
func BenchmarkTxSelect(b *testing.B) {
	for _, v := range ipVersions {
		b.Run(v.name, func(b *testing.B) {
			l, _ := newSinkLagg(b, "loadbalance", 4)
			pkts, _ := outbound(b, hotFlows(v.v6, 64))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if l.SelectTxPort(pkts[i&63]) == "" {
					b.Fatal("no port")
				}
				i++
			}
		})
	}
}

// BenchmarkTxWrite is WritePackets of one frame (as the stack sends them)
// through a loadbalance lagg over 4 ports into children that only count.
func BenchmarkTxWrite(b *testing.B) {
	for _, v := range ipVersions {
		b.Run(v.name, func(b *testing.B) {
			l, _ := newSinkLagg(b, "loadbalance", 4)
			_, lists := outbound(b, hotFlows(v.v6, 64))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if _, err := l.WritePackets(lists[i&63]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkRxAccept is a port's receive accept: the shim checks that the
// port may receive, counts and hands the frame to the stack's dispatcher.
func BenchmarkRxAccept(b *testing.B) {
	l, sinks := newSinkLagg(b, "loadbalance", 4)
	var d countingDispatcher
	l.Attach(&d)
	shim := lagg.PortDispatcher(l, sinks[2].Name())
	pkt := inbound(b, tcp4(40000, 443))
	b.ReportAllocs()
	for b.Loop() {
		shim.DeliverNetworkPacket(header.IPv4ProtocolNumber, pkt)
	}
	if d.network.Load() == 0 {
		b.Fatal("nothing delivered")
	}
}

// BenchmarkTxFailover is WritePackets of one frame through a failover lagg
// over 4 ports (lacp transmits through loadbalance's hashing transmitter,
// measured by BenchmarkTxWrite).
func BenchmarkTxFailover(b *testing.B) {
	l, _ := newSinkLagg(b, "failover", 4)
	_, lists := outbound(b, hotFlows(false, 64))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := l.WritePackets(lists[i&63]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
