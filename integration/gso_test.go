package integration

import (
	"net/netip"
	"testing"
	"time"

	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
)

// TestPortGSOKey: an AF_PACKET port offers host GSO by default; a reload
// with gso = false on it reopens the port without (the lagg then offers no
// GSO), ifconfig `laggport IF tso` reopens it with GSO again and `-tso`
// without, and TCP works in both directions after every change.
func TestPortGSOKey(t *testing.T) {
	tp := newTopo(t, 1)
	lc := laggConfig(config.ProtoFailover, tp.ports...)
	ap := startAppliance(t, lc, appOptions{netns: tp.lag})
	port := tp.ports[0]
	check := func(step string, want gstack.SupportedGSO) {
		t.Helper()
		testkit.WaitFor(t, 5*time.Second, step+": lagg0 up", func() bool { return ap.a.Lagg("lagg0").Status().Up })
		l := ap.a.Lagg("lagg0")
		if got := l.SupportedGSO(); got != want {
			t.Errorf("%s: the lagg's GSO is %s, want %s", step, gsoName(got), gsoName(want))
		}
		pingOK(t, tp.host, 3)
		dial := kernelDialer(tp.host, netip.AddrPortFrom(laggAddr, echoPort).String())
		testkit.CheckEcho(t, dial, testkit.Bytes(uint64(want)+1, 1<<20))
		var ports []config.Port
		if c := ap.a.Config().Lagg("lagg0"); c != nil {
			ports = c.Ports
		}
		t.Logf("measure: %s: lagg GSO %s, port in the running config %+v, ping and 1 MiB TCP echo ok", step, gsoName(l.SupportedGSO()), ports)
	}
	check("gso default (true)", gstack.HostGSOSupported)

	next := ap.a.Config()
	next.Lagg("lagg0").Ports[0].DisableGSO = true
	if err := ap.a.ReloadConfig(next); err != nil {
		t.Fatalf("reload with gso = false: %v", err)
	}
	check("reload gso = false", gstack.GSONotSupported)

	ifconfig := func(args ...string) {
		t.Helper()
		cmd, err := config.ParseIfconfig(append([]string{"lagg0"}, args...))
		if err != nil {
			t.Fatal(err)
		}
		if err := ap.a.Ifconfig(cmd, nil); err != nil {
			t.Fatalf("ifconfig %v: %v", args, err)
		}
	}
	ifconfig("laggport", port, "tso")
	check("ifconfig laggport "+port+" tso", gstack.HostGSOSupported)
	ifconfig("laggport", port, "-tso")
	check("ifconfig laggport "+port+" -tso", gstack.GSONotSupported)
}

func gsoName(g gstack.SupportedGSO) string {
	switch g {
	case gstack.HostGSOSupported:
		return "host"
	case gstack.GSONotSupported:
		return "none"
	}
	return "other"
}
