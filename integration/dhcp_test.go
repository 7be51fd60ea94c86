package integration

// The DHCP client (stack/dhcp) against Debian's dnsmasq, started by the
// test inside the kernel host's namespace and serving the bridge the lagg's
// ports hang off: lease, renewal at a short T1, failover, server restart,
// release on stop.

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
	"github.com/ulagg/ulagg/stack/dhcp"
)

// DHCP timing of the tests: dnsmasq's shortest lease is 2 min, but it
// sends the T1 and T2 options it is given, so the client renews in seconds.
const (
	dhcpT1 = 4 * time.Second
	dhcpT2 = 7 * time.Second
)

// requireDnsmasq skips without dnsmasq, or fails under CI=true.
func requireDnsmasq(t *testing.T) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("dnsmasq not installed (CI=true: failing instead of skipping; apt-get install dnsmasq-base)")
		}
		t.Skip("dnsmasq not installed (apt-get install dnsmasq-base)")
	}
}

// dnsmasq is a DHCP server in a namespace, its leases and log in dir.
type dnsmasq struct {
	ns, iface, dir string
	// args replace the DHCPv4 serving options when set; ready is the log
	// line that says the server runs.
	args   []string
	ready  string
	cmd    *exec.Cmd
	exited chan struct{}
}

func (d *dnsmasq) leaseFile() string { return filepath.Join(d.dir, "leases") }
func (d *dnsmasq) logFile() string   { return filepath.Join(d.dir, "log") }

// startDnsmasq serves DHCP on iface in ns: 10.231.0.100-150, 2 min
// leases, T1 and T2 short, the kernel host as router, MTU 1400. It is
// stopped when the test ends.
func startDnsmasq(t *testing.T, ns, iface, dir string, args ...string) *dnsmasq {
	t.Helper()
	d := &dnsmasq{ns: ns, iface: iface, dir: dir, args: args}
	if args != nil {
		d.ready = "started, version"
	}
	d.start(t)
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			b, _ := os.ReadFile(d.logFile())
			t.Logf("dnsmasq log:\n%s", ifcTail(string(b), 8<<10))
		}
	})
	return d
}

func (d *dnsmasq) start(t *testing.T) {
	t.Helper()
	serve := d.args
	if serve == nil {
		serve = []string{
			"--dhcp-range=10.231.0.100,10.231.0.150,255.255.255.0,2m",
			fmt.Sprintf("--dhcp-option=option:T1,%d", int(dhcpT1/time.Second)),
			fmt.Sprintf("--dhcp-option=option:T2,%d", int(dhcpT2/time.Second)),
			"--dhcp-option=option:router," + hostIP,
			"--dhcp-option=option:mtu,1400",
		}
	}
	ready := d.ready
	if ready == "" {
		ready = "DHCP, IP range"
	}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", d.ns, "dnsmasq",
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--port=0",
		"--interface=" + d.iface, "--bind-interfaces", "--user=root", "--group=root",
		"--dhcp-leasefile=" + d.leaseFile(), "--pid-file=" + filepath.Join(d.dir, "pid"),
		"--log-facility=" + d.logFile(), "--log-dhcp"}, serve...)...)
	out := &syncBuffer{}
	d.cmd.Stdout, d.cmd.Stderr = out, out
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	d.exited = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	// Ready when it logs that DHCP is on.
	if !testkit.Poll(5*time.Second, func() bool { return strings.Contains(d.log(), ready) }) {
		d.stop()
		t.Fatalf("dnsmasq did not start serving DHCP: %s\n%s", out.String(), d.log())
	}
}

// stop kills the server and waits for it.
func (d *dnsmasq) stop() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Kill()
	<-d.exited
}

func (d *dnsmasq) log() string {
	b, _ := os.ReadFile(d.logFile())
	return string(b)
}

func (d *dnsmasq) leases() string {
	b, _ := os.ReadFile(d.leaseFile())
	return string(b)
}

// dhcpLagg is lagg0 with addresses = ["dhcp"] over afpacket ports.
func dhcpLagg(ports ...string) config.Lagg {
	lc := laggConfig(config.ProtoFailover, ports...)
	lc.Addresses, lc.DHCP = nil, true
	return lc
}

func dhcpStatus(ap *app) *appliance.DHCPStatus { return ap.a.Status()[0].DHCP }

// TestDHCPDnsmasq: the lagg gets its address from dnsmasq, with the
// router and MTU options applied; it renews at T1; keeps the lease (and
// answers on it) across a failover and a server restart; and releases it
// on a clean stop.
func TestDHCPDnsmasq(t *testing.T) {
	requireDnsmasq(t)
	tp := newTopo(t, 2)
	srv := startDnsmasq(t, tp.host, tp.bridge, t.TempDir())
	ap := startAppliance(t, dhcpLagg(tp.ports...), appOptions{netns: tp.lag})

	testkit.WaitFor(t, 20*time.Second, "a lease from dnsmasq", func() bool { s := dhcpStatus(ap); return s != nil && s.State == dhcp.Bound })
	st := dhcpStatus(ap)
	lease := st.Lease
	addr := lease.Address.Addr()
	pool := netip.MustParsePrefix("10.231.0.0/24")
	if !pool.Contains(addr) || lease.Address.Bits() != 24 || lease.Server != hostAddr || lease.Router != hostAddr {
		t.Fatalf("lease %+v: want an address of %s/24 from %s, router %s", lease, pool, hostIP, hostIP)
	}
	if lease.Time != 2*time.Minute || lease.T1 != dhcpT1 || lease.T2 != dhcpT2 {
		t.Errorf("lease times %s T1 %s T2 %s, want 2m0s %s %s (dnsmasq's T1/T2 options)", lease.Time, lease.T1, lease.T2, dhcpT1, dhcpT2)
	}
	if got := ap.l.MTU(); got != 1400 || lease.MTU != 1400 {
		t.Errorf("lagg MTU %d, lease MTU %d: want 1400 from the MTU option", got, lease.MTU)
	}
	mac := ap.l.Status().MAC.String()
	if l := srv.leases(); !strings.Contains(l, mac) || !strings.Contains(l, addr.String()) {
		t.Errorf("dnsmasq's lease file lacks %s %s:\n%s", mac, addr, l)
	}
	if r, err := lab.Ping(tp.host, addr, 3, 100*time.Millisecond, time.Second); err != nil || r.Received == 0 {
		t.Errorf("the kernel host pings the leased %s: %+v %v", addr, r, err)
	}
	// The default route is the router option's.
	installed, _ := ap.a.Routes()
	if !slices.ContainsFunc(installed, func(r ustack.Route) bool {
		return r.To.Bits() == 0 && r.To.Addr().Is4() && r.Via == hostAddr && r.Origin == ustack.RouteDHCP
	}) {
		t.Errorf("routes %v: want a default route via %s of origin dhcp", installed, hostIP)
	}

	// Renewal at T1, unicast to dnsmasq.
	testkit.WaitFor(t, dhcpT1+10*time.Second, "a renewal", func() bool { return dhcpStatus(ap).Renewals >= 1 })
	if s := dhcpStatus(ap); s.Lease.Address != lease.Address {
		t.Errorf("renewed lease has %s, want %s", s.Lease.Address, lease.Address)
	}

	// Failover: same MAC on every port, so the same lease.
	from := ap.l.Status().TxPort
	linkDown(t, tp.lag, from)
	testkit.WaitFor(t, 5*time.Second, "failover", func() bool { tx := ap.l.Status().TxPort; return tx != "" && tx != from })
	if r, err := lab.Ping(tp.host, addr, 3, 100*time.Millisecond, 2*time.Second); err != nil || r.Received == 0 {
		t.Errorf("ping %s after failover: %+v %v", addr, r, err)
	}
	renewals := dhcpStatus(ap).Renewals
	testkit.WaitFor(t, dhcpT1+10*time.Second, "a renewal after failover", func() bool { return dhcpStatus(ap).Renewals > renewals })

	// Server restart: the lease file keeps the lease; the next renewal
	// gets it again.
	srv.stop()
	srv.start(t)
	renewals = dhcpStatus(ap).Renewals
	testkit.WaitFor(t, dhcpT2+10*time.Second, "a renewal from the restarted server", func() bool { return dhcpStatus(ap).Renewals > renewals })
	if s := dhcpStatus(ap); s.Lease.Address != lease.Address || s.Lost != 0 {
		t.Errorf("after the server restart: %+v, want %s kept, nothing lost", s, lease.Address)
	}

	// A clean stop releases the lease.
	ap.a.Close()
	testkit.WaitFor(t, 5*time.Second, "DHCPRELEASE in dnsmasq's log", func() bool {
		return strings.Contains(srv.log(), "DHCPRELEASE("+tp.bridge+") "+addr.String())
	})
	testkit.WaitFor(t, 5*time.Second, "the lease gone from dnsmasq's lease file", func() bool {
		return !strings.Contains(srv.leases(), addr.String())
	})
	for _, p := range tp.ports {
		if li := mustLink(t, tp.lag, p); li.MTU != 1500 {
			t.Errorf("%s MTU %d after stop, want 1500 back", p, li.MTU)
		}
	}
}
