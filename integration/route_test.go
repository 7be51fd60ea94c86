package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// Routes: a client on another subnet, behind a kernel router, reaches the
// lagg's tcp-echo over IPv4 and IPv6 only through the lagg's default
// routes.
//
//	client ns (rtc)           router = the topo's host ns          lag ns
//	ulitc0 10.232.0.2/24 ── ulitr0 10.232.0.1/24   bridge 10.231.0.1/24 ══ ulitp0, ulitp1
//	       fd32::2/64               fd32::1/64     (ulitbr) fd31::1/64      lagg0 10.231.0.2/24, fd31::2/64
//
// Every address lives in a namespace the test made.
const (
	rtClientIP  = "10.232.0.2"
	rtClientIP6 = "fd32::2"
	rtLaggIP6   = "fd31::2"
	rtRouterIP6 = "fd31::1"
)

// rtConfig is the appliance's file: lagg0 over the topo's ports, tcp-echo,
// and both default routes.
func rtConfig(sock, runtime string, ports []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[control]\nsocket = %q\nruntime_dir = %q\n\n", sock, runtime)
	fmt.Fprintf(&b, "[[lagg]]\nname = \"lagg0\"\nproto = \"failover\"\naddresses = [\"%s/24\", \"%s/64\"]\n", laggIP, rtLaggIP6)
	for i, p := range ports {
		fmt.Fprintf(&b, "[[lagg.port]]\nname = %q\npriority = %d\n", p, 1000*(i+1))
	}
	fmt.Fprintf(&b, "\n[[service]]\nkind = \"tcp-echo\"\nport = %d\n", echoPort)
	fmt.Fprintf(&b, "\n[[route]]\nto = \"default\"\nvia = %q\n\n[[route]]\nto = \"default\"\nvia = %q\n", hostIP, rtRouterIP6)
	return b.String()
}

// rtRouter makes tp's host namespace a router between the lag's subnet and
// a client namespace, IPv4 and IPv6, and returns the client's namespace.
func rtRouter(t *testing.T, tp *topo) string {
	t.Helper()
	client, err := tp.lab.AddNS("rtc")
	if err != nil {
		t.Fatal(err)
	}
	r, c := testPrefix+"r0", testPrefix+"c0"
	if err := tp.lab.Veth(r, tp.host, c, client); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"ip", "netns", "exec", tp.host, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"},
		{"ip", "netns", "exec", client, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"},
		{"ip", "netns", "exec", tp.host, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		{"ip", "netns", "exec", tp.host, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"},
		{"ip", "-n", tp.host, "addr", "add", "fd31::1/64", "dev", tp.bridge, "nodad"},
		{"ip", "-n", tp.host, "addr", "add", "10.232.0.1/24", "dev", r},
		{"ip", "-n", tp.host, "addr", "add", "fd32::1/64", "dev", r, "nodad"},
		{"ip", "-n", client, "addr", "add", rtClientIP + "/24", "dev", c},
		{"ip", "-n", client, "addr", "add", rtClientIP6 + "/64", "dev", c, "nodad"},
		{"ip", "-n", client, "route", "add", "default", "via", "10.232.0.1"},
		{"ip", "-n", client, "-6", "route", "add", "default", "via", "fd32::1"},
	} {
		if err := lab.Run(cmd...); err != nil {
			t.Fatal(err)
		}
	}
	return client
}

// rtEcho checks tcp-echo on addr from the client, byte for byte.
func rtEcho(t *testing.T, client, network, addr string, seed uint64) {
	t.Helper()
	testkit.CheckEcho(t, func(context.Context) (net.Conn, error) { return lab.Dial(client, network, addr) }, testkit.Bytes(seed, 64<<10))
}

// rtUnreachable checks that the client cannot connect to addr within 2 s.
func rtUnreachable(t *testing.T, client, network, addr string) {
	t.Helper()
	err := lab.Do(client, func() error {
		c, err := (&net.Dialer{Timeout: 2 * time.Second}).Dial(network, addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err == nil {
		t.Fatalf("%s %s: connected, want no answer (the lagg has no route back)", network, addr)
	}
}

// TestRoutes: the client reaches tcp-echo over IPv4 and IPv6 with the
// default routes from TOML; `ulagg route delete` cuts it off (and ulagg
// says which client it cannot answer), `ulagg route add` brings it back,
// save writes the routes, and a failover keeps it working.
func TestRoutes(t *testing.T) {
	tp := newTopo(t, 2)
	client := rtRouter(t, tp)
	dir := t.TempDir()
	p := &ifcProc{bin: buildULagg(t), ns: tp.lag, file: filepath.Join(dir, "ulagg.toml"), sock: filepath.Join(dir, "ulagg.sock")}
	if err := os.WriteFile(p.file, []byte(rtConfig(p.sock, filepath.Join(dir, "run"), tp.ports)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	v4 := net.JoinHostPort(laggIP, fmt.Sprint(echoPort))
	v6 := net.JoinHostPort(rtLaggIP6, fmt.Sprint(echoPort))
	route := func(words ...string) string {
		t.Helper()
		out, errOut, code := p.run(t, append([]string{"route", "-s", p.sock}, words...)...)
		if code != 0 {
			t.Fatalf("ulagg route %s: exit %d, stdout %q, stderr %q", strings.Join(words, " "), code, out, errOut)
		}
		return out
	}

	testkit.WaitFor(t, 10*time.Second, "lagg0 up", func() bool {
		return strings.Contains(p.status(t), "status: active")
	})
	rtEcho(t, client, "tcp4", v4, 1)
	rtEcho(t, client, "tcp6", v6, 2)

	show := route("show")
	for _, want := range []string{"Internet:", "Internet6:", "default", hostIP, rtRouterIP6, "UGS", "lagg0", "10.231.0.0/24"} {
		if !strings.Contains(show, want) {
			t.Errorf("route show: no %q in\n%s", want, show)
		}
	}
	var rows []map[string]any
	showJSON := route("--json", "show")
	checkSchema(t, "route.schema.json", "route show --json", []byte(showJSON))
	if err := json.Unmarshal([]byte(showJSON), &rows); err != nil {
		t.Fatalf("route show --json: %v", err)
	}
	defaults := 0
	for _, r := range rows {
		if r["destination"] == "0.0.0.0/0" && r["gateway"] == hostIP && r["interface"] == "lagg0" && r["origin"] == "static" ||
			r["destination"] == "::/0" && r["gateway"] == rtRouterIP6 && r["interface"] == "lagg0" && r["installed"] == true {
			defaults++
		}
	}
	if defaults != 2 {
		t.Errorf("route show --json: want both default routes installed on lagg0, got %v", rows)
	}

	// Without them the lagg cannot answer the client, and says so.
	route("delete", "default", hostIP)
	route("delete", "-inet6", "default")
	rtUnreachable(t, client, "tcp4", v4)
	rtUnreachable(t, client, "tcp6", v6)
	want := fmt.Sprintf("no route to %s (a reply from %s:%d); add one: ulagg route add default GATEWAY", rtClientIP, laggIP, echoPort)
	if !strings.Contains(p.out.String(), want) {
		t.Errorf("ulagg's log lacks %q", want)
	}
	// gVisor's own line for the same SYNs would end in one of these.
	for _, l := range strings.Split(p.out.String(), "\n") {
		if strings.Contains(l, "handleListenSegment") && (strings.Contains(l, "no route to host") || strings.Contains(l, "network is unreachable")) {
			t.Errorf("gVisor's own warning reached the log: %s", l)
		}
	}

	route("add", "default", hostIP)
	route("add", "-inet6", "default", rtRouterIP6)
	rtEcho(t, client, "tcp4", v4, 3)
	rtEcho(t, client, "tcp6", v6, 4)
	if out, _, code := p.run(t, "save", "-s", p.sock); code != 0 {
		t.Fatalf("save: exit %d: %s", code, out)
	}
	saved, err := os.ReadFile(p.file)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"[[route]]\nto = \"default\"\nvia = \"" + hostIP + "\"", "[[route]]\nto = \"default\"\nvia = \"" + rtRouterIP6 + "\""} {
		if !strings.Contains(string(saved), want) {
			t.Errorf("saved file lacks %q:\n%s", want, saved)
		}
	}

	// Failover: the routes are the lagg's NIC's, which does not change.
	setLink(t, tp.lag, tp.ports[0], "down")
	testkit.WaitFor(t, 5*time.Second, "transmitting on "+tp.ports[1], func() bool {
		return strings.Contains(p.status(t, "-v"), "tx port="+tp.ports[1])
	})
	rtEcho(t, client, "tcp4", v4, 5)
	rtEcho(t, client, "tcp6", v6, 6)
	setLink(t, tp.lag, tp.ports[0], "up")
	p.stop(t)
}
