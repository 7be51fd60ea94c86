package appliance_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// routeCall runs `ulagg route WORDS` through the control socket.
func (r *ctlRig) routeCall(json bool, words string) (string, error) {
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdRoute, Args: strings.Fields(words), JSON: json})
	if err != nil {
		return "", err
	}
	return resp.Output, nil
}

func (r *ctlRig) mustRoute(words string) string {
	r.t.Helper()
	out, err := r.routeCall(false, words)
	if err != nil {
		r.t.Fatalf("ulagg route %s: %v", words, err)
	}
	return out
}

// nextHop is the gateway the appliance's stack sends dst to ("" if none).
func nextHop(a *appliance.Appliance, dst string) string {
	rt, err := a.Stack().FindRoute(0, tcpip.Address{}, tcpip.AddrFromSlice(netip.MustParseAddr(dst).AsSlice()), ipv4.ProtocolNumber, false)
	if err != nil {
		return ""
	}
	defer rt.Release()
	return rt.NextHop().String()
}

const routeRigTOML = `[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["192.168.1.1/24", "fd00::1/64"]
` + wmPortsTOML + `
[[route]]
to = "10.7.0.0/16"
via = "192.168.1.253"
`

// TestControlRoute: routes from the file are installed, `route add` and
// `route delete` change the running table all or nothing, show prints it
// as netstat -rn and as JSON, save writes it, and reload diffs it.
func TestControlRoute(t *testing.T) {
	r := newCtlRig(t, routeRigTOML, "failover", "wm0", "wm1")
	if got := nextHop(r.a, "10.7.1.1"); got != "192.168.1.253" {
		t.Fatalf("route from the file: next hop for 10.7.1.1 is %q, want 192.168.1.253", got)
	}
	if got := nextHop(r.a, "8.8.8.8"); got != "" {
		t.Fatalf("no default route yet, but 8.8.8.8 goes via %q", got)
	}
	r.mustRoute("add default 192.168.1.254")
	r.mustRoute("add -inet6 default fd00::fe -metric 5")
	if got := nextHop(r.a, "8.8.8.8"); got != "192.168.1.254" {
		t.Errorf("after route add: next hop for 8.8.8.8 is %q, want 192.168.1.254", got)
	}
	show := r.mustRoute("show")
	checkLines(t, show, []string{
		"Routing tables",
		"",
		"Internet:",
		"Destination     Gateway        Flags  Netif  Metric  Origin",
		"192.168.1.0/24  link#1         UC     lagg0  0       connected",
		"10.7.0.0/16     192.168.1.253  UGS    lagg0  0       static",
		"default         192.168.1.254  UGS    lagg0  0       static",
		"",
		"Internet6:",
		"Destination  Gateway   Flags  Netif  Metric  Origin",
		"fd00::/64    link#1    UC     lagg0  0       connected",
		"default      fd00::fe  UGS    lagg0  5       static",
	})
	out, err := r.routeCall(true, "show -inet6")
	if err != nil {
		t.Fatal(err)
	}
	var rows []appliance.RouteJSON
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	want := appliance.RouteJSON{Family: "inet6", Destination: "::/0", Gateway: "fd00::fe", Flags: "UGS", Interface: "lagg0", Metric: 5, Origin: "static", Installed: true}
	if len(rows) != 2 || rows[1] != want {
		t.Errorf("show -inet6 --json: got %+v, want the connected route then %+v", rows, want)
	}
	if !strings.Contains(out, `"destination": "::/0"`) || !strings.Contains(out, `"gateway": "fd00::fe"`) {
		t.Errorf("JSON keys are not snake_case strings:\n%s", out)
	}

	// Refused changes leave everything as it was.
	for _, c := range []struct{ words, want string }{
		{"add default 192.168.1.254", "exists"},
		{"add default 192.168.1.9 -ifp lagg9", `no interface is named "lagg9"`},
		{"delete 10.99.0.0/16", "no such static route"},
		{"add default", "needs a gateway"},
		{"delete default", `"default" needs a gateway`},
	} {
		if _, err := r.routeCall(false, c.words); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("route %s: got %v, want an error with %q", c.words, err, c.want)
		}
	}
	// A gateway in no subnet waits, and says so.
	if out := r.mustRoute("add -net 10.8.0.0/16 10.1.1.1"); !strings.Contains(out, "warning: route 10.8.0.0/16 waits") {
		t.Errorf("unreachable gateway: output %q, want a warning", out)
	}
	if show := r.mustRoute("show -inet"); !strings.Contains(show, "10.8.0.0/16     10.1.1.1       GS     -") {
		t.Errorf("waiting route not shown as such:\n%s", show)
	}

	// Reload shows what it would undo; save writes the routes.
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"route default 192.168.1.254 removed", "route default fd00::fe removed"} {
		if !strings.Contains(resp.Output, w) {
			t.Errorf("reload --dry-run: no %q in\n%s", w, resp.Output)
		}
	}
	r.mustRoute("delete 10.8.0.0/16")
	if _, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdSave}); err != nil {
		t.Fatal(err)
	}
	saved, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(saved), "[[route]]\nto = \"default\"\nvia = \"fd00::fe\"\nmetric = 5\n") {
		t.Errorf("saved file lacks the IPv6 default:\n%s", saved)
	}
	r.mustRoute("delete default 192.168.1.254")
	if got := nextHop(r.a, "8.8.8.8"); got != "" {
		t.Errorf("after route delete: 8.8.8.8 still goes via %q", got)
	}

	// A reload applies the file's routes and says what changed.
	if err := os.WriteFile(r.file, []byte(strings.Replace(string(saved), "192.168.1.253", "192.168.1.252", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	resp, err = appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdReload, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"route 10.7.0.0/16 192.168.1.253 removed", "route 10.7.0.0/16 192.168.1.252 added (metric 0)", "route default 192.168.1.254 added (metric 0)"} {
		if !strings.Contains(resp.Output, w) {
			t.Errorf("reload: no %q in\n%s", w, resp.Output)
		}
	}
	if got := nextHop(r.a, "10.7.1.1"); got != "192.168.1.252" {
		t.Errorf("after reload: next hop for 10.7.1.1 is %q, want 192.168.1.252", got)
	}
}

// TestControlRouteNoRouteBack: a client on a subnet the appliance has no
// route to gets no answer (its SYNs are dropped and counted, not handed to
// gVisor to fail on); an on-link route added at runtime lets it in.
func TestControlRouteNoRouteBack(t *testing.T) {
	r := newCtlRig(t, routeRigTOML, "failover", "wm0", "wm1")
	r.waitRunning("lagg0", 10*time.Second)
	// The peer also answers for 10.9.0.5, on the same wire.
	if err := r.peer.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4([4]byte{10, 9, 0, 5}), PrefixLen: 24}}, gstack.AddressProperties{}); err != nil {
		t.Fatal(err)
	}
	dial := func(timeout time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := gonet.DialTCPWithBind(ctx, r.peer,
			tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{10, 9, 0, 5})},
			tcpip.FullAddress{NIC: 1, Addr: tcpip.AddrFrom4([4]byte{192, 168, 1, 1}), Port: 7}, ipv4.ProtocolNumber)
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial(time.Second); err == nil {
		t.Fatal("connected from 10.9.0.5 without a route back")
	}
	if n := r.a.NoRouteDrops(); n == 0 {
		t.Errorf("no-route drops: got 0, want the client's SYNs")
	}
	r.mustRoute("add -net 10.9.0.0/24 -ifp lagg0")
	testkit.WaitFor(t, 10*time.Second, "connected from 10.9.0.5 over the on-link route", func() bool { return dial(2*time.Second) == nil })
}
