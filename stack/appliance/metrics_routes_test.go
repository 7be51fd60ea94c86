package appliance_test

import (
	"context"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/ulagg/ulagg/stack/appliance"
)

// TestMetricsRoutes: ulagg_routes counts the installed routes by origin
// and family, every combination sent (zero included), a waiting route not
// counted; the SYNs dropped for want of a route back are
// ulagg_stack_drops_total{reason="no_route"}.
func TestMetricsRoutes(t *testing.T) {
	r := newCtlRig(t, routeRigTOML, "failover", "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	r.mustRoute("add -inet6 default fd00::fe")                                      // no IPv4 default: 10.9.0.5 has no route back
	if _, err := r.routeCall(false, "add -net 10.8.0.0/16 10.99.0.1"); err != nil { // waits for its gateway
		t.Fatal(err)
	}
	from := r.peerAlias(1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := gonet.DialTCPWithBind(ctx, r.peer, tcpip.FullAddress{NIC: 1, Addr: from},
		tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 168, 1, 1}), Port: 7}, ipv4.ProtocolNumber); err == nil {
		c.Close()
		t.Fatal("connected from 10.9.0.5 without a route back")
	}
	m, err := appliance.ListenMetrics(r.a, "127.0.0.1:0", r.log)
	if err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, m)
	m.Close()
	for _, c := range []struct {
		origin, family string
		want           float64
	}{
		{"connected", "inet", 1}, {"connected", "inet6", 1}, // 192.168.1.0/24, fd00::/64
		{"static", "inet", 1}, {"static", "inet6", 1}, // 10.7.0.0/16 and ::/0; 10.8.0.0/16 waits
		{"dhcp", "inet", 0}, {"dhcp", "inet6", 0}, {"ra", "inet", 0}, {"ra", "inet6", 0},
	} {
		if got := value(t, fams, "ulagg_routes", "origin="+c.origin, "family="+c.family); got != c.want {
			t.Errorf("ulagg_routes{origin=%q,family=%q}: got %v, want %v", c.origin, c.family, got, c.want)
		}
	}
	if got, want := value(t, fams, "ulagg_stack_drops_total", "reason=no_route"), float64(r.a.NoRouteDrops()); got < 1 || got > want {
		t.Errorf(`ulagg_stack_drops_total{reason="no_route"}: got %v, want between 1 and %v`, got, want)
	}
}
