package integration

// Tests of `ulagg ifconfig` against the ulagg binary on real interfaces:
// `ulagg run -c FILE` runs in a test namespace from a file that has only
// the control socket and the tcp-echo and tcp-discard services; everything
// else is done with `ulagg ifconfig -s SOCK ...` (and `ulagg save`), as an
// operator following lagg(4) would. ulifwm0 and ulifwm1 stand in for the
// man page's wm0 and wm1; the kernel host, 192.168.1.2 on a bridge over
// their veth peers, pings and talks TCP to the lagg at 192.168.1.1. These
// mirror stack/control_test.go, which runs the same scenarios in-process
// over in-memory wires.

import (
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/stack/appliance"
)

// ifcManPageFailover runs lagg(4)'s failover example, one ifconfig line
// after another, and waits for the lagg to be RUNNING.
func ifcManPageFailover(t *testing.T, p *ifcProc, wm0, wm1 string) {
	t.Helper()
	p.mustIfconfig(t,
		"lagg0 create",
		"lagg0 laggproto failover",
		"lagg0 laggport "+wm0+" pri 1000",
		"lagg0 laggport "+wm1+" pri 2000",
		"lagg0 inet 192.168.1.1 netmask 255.255.255.0",
	)
	p.waitStatus(t, 10*time.Second, ifcRunning+"1500")
}

// ifcFailoverStatus is `ulagg ifconfig lagg0` of the man page's failover
// lagg, with port lines given.
func ifcFailoverStatus(mac, mtu string, ports ...string) []string {
	lines := []string{ifcRunning + mtu, "\tlaggproto failover", "\t\tlaggfailover rx-all", "\tlaggport:"}
	for _, p := range ports {
		lines = append(lines, "\t\t"+p)
	}
	return append(lines,
		"\taddress: "+mac,
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		ifcLinkLocal(mac),
	)
}

// ifcLinkLocal is the lagg's IPv6 link-local line, the EUI-64 address of
// its MAC (RFC 4291 appendix A; "*": any MAC) on its NIC.
func ifcLinkLocal(mac string) string {
	if mac == "*" {
		return "\tinet6 fe80::*%lagg0 prefixlen 64 scopeid 0x*"
	}
	hw, err := net.ParseMAC(mac)
	if err != nil || len(hw) != 6 {
		return "\tinet6 <bad MAC " + mac + ">"
	}
	a := [16]byte{0: 0xfe, 1: 0x80, 8: hw[0] ^ 0x02, 9: hw[1], 10: hw[2], 11: 0xff, 12: 0xfe, 13: hw[3], 14: hw[4], 15: hw[5]}
	return "\tinet6 " + netip.AddrFrom16(a).String() + "%lagg0 prefixlen 64 scopeid 0x*"
}

// ifcWithoutStackDrops leaves out -v's "stack: drops:" line: with rx-all
// the bridge hands the lagg's own IPv6 multicast (from its link-local
// address) back on the other port, which gVisor counts as ip_invalid_source.
func ifcWithoutStackDrops(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, "stack: drops: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

const (
	ifcTxFlags   = "flags=0x1c<ACTIVE,COLLECTING,DISTRIBUTING>"
	ifcRxFlags   = "flags=0xc<ACTIVE,COLLECTING>"
	ifcNoSuchLag = "ulagg ifconfig: lagg0: no such lagg\n"
)

// ifcHasLines checks that each pattern matches some line of got.
func ifcHasLines(t *testing.T, what, got string, patterns ...string) {
	t.Helper()
	lines := strings.Split(got, "\n")
	for _, pat := range patterns {
		found := false
		for _, l := range lines {
			if ifcGlob(pat, l) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s: no line %q in:\n%s", what, pat, got)
		}
	}
}

// lacpMAC is a MAC as lacp_format_id prints it: 0A-1B-...
func lacpMAC(mac string) string { return strings.ToUpper(strings.ReplaceAll(mac, ":", "-")) }

// TestIfconfigManPageLACP runs both of lagg(4)'s examples in order on one
// running ulagg: the lacp one, which with no LACP partner (a Linux bridge
// does not answer LACPDUs) leaves both ports in the lagg but neither
// distributing and the lagg without RUNNING; lagglacp options, which show
// in `ifconfig -v` and (fallback) carry traffic on one port; destroy, which
// gives the ports back; then the failover example on the same ports, after
// which the kernel host pings the lagg and TCP echo works.
func TestIfconfigManPageLACP(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]

	if out, _, code := p.ifconfig(t, "-l"); code != 0 || out != "\n" {
		t.Fatalf("ifconfig -l with no lagg: exit %d, %q; want an empty list", code, out)
	}
	p.mustIfconfig(t, "lagg0 create")
	ifcCheckLines(t, "after create", p.status(t), []string{
		ifcNoCarrier + "1500",
		"\tlaggproto none",
		"\taddress: *",
		"\tmedia: Ethernet autoselect",
		"\tstatus: no carrier",
		ifcLinkLocal("*"),
	})
	p.mustIfconfig(t, "lagg0 laggproto lacp laggport "+wm0+" laggport "+wm1+" 192.168.1.1 netmask 255.255.255.0")
	lacpNoPartner := []string{
		ifcNoCarrier + "1500",
		"\tlaggproto lacp",
		"\tlaggport:",
		"\t\t" + wm0 + " pri=32768 flags=0x0",
		"\t\t" + wm1 + " pri=32768 flags=0x0",
		"\taddress: " + tp.mac[wm0],
		"\tmedia: Ethernet autoselect",
		"\tstatus: no carrier",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		ifcLinkLocal(tp.mac[wm0]),
	}
	// Through the LACP timers (the partner information expires after the
	// short timeout, 3 s): never DISTRIBUTING, never RUNNING.
	for end := time.Now().Add(4 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if !ifcCheckLines(t, "lacp without a partner", p.status(t), lacpNoPartner) {
			t.FailNow()
		}
	}
	if r, err := lab.Ping(tp.host, ifcLaggAddr, 2, 0, 300*time.Millisecond); err != nil || r.Received != 0 {
		t.Errorf("ping an LACP lagg without a partner: %d replies (err %v), want none: the lagg is down", r.Received, err)
	}
	verbose := p.status(t, "-v")
	ifcHasLines(t, "ifconfig -v, lacp defaults", verbose,
		"\t\tmax ports=16, flags=0x8<MULTILS>",
		"\t\tmin ports=1, rate=slow, mode=active, fallback=off",
		"\t\tactor=[8000,"+lacpMAC(tp.mac[wm0])+",*]",
		"\t\tpartner=[0000,00-00-00-00-00-00,0000]",
		"\t\t\tmux=DETACHED *",
	)

	// lagglacp options: accepted, shown, and in effect.
	p.mustIfconfig(t, "lagg0 lagglacp maxports 2 minports 1 fast -multi-speed sysprio 100 key 7")
	ifcHasLines(t, "ifconfig -v after lagglacp", p.status(t, "-v"),
		"\t\tmax ports=2, flags=0x0",
		"\t\tmin ports=1, rate=fast, mode=active, fallback=off",
		"\t\tactor=[0064,"+lacpMAC(tp.mac[wm0])+",0007]",
		"\t\t\tactor: state=*TIMEOUT*", // fast: short timeout asked of the partner
	)
	p.mustIfconfig(t, "lagg0 lagglacp fallback")
	st := p.waitStatus(t, 10*time.Second, ifcRunning+"1500")
	if n := strings.Count(st, ifcTxFlags); n != 1 {
		t.Errorf("lacp fallback: %d ports distributing, want 1:\n%s", n, st)
	}
	ifcHasLines(t, "ifconfig -v with fallback", p.status(t, "-v"), "\t\tmin ports=1, rate=fast, mode=active, fallback=on")
	ifcPingOK(t, tp, 3)
	ifcEchoOK(t, tp, 256<<10)
	p.mustIfconfig(t, "lagg0 lagglacp -fallback")
	p.waitStatus(t, 10*time.Second, ifcNoCarrier+"1500")

	// destroy: the lagg is gone and its ports are the host's again.
	p.mustIfconfig(t, "lagg0 destroy")
	if out, errOut, code := p.ifconfig(t, "lagg0"); code != 1 || out != "" || errOut != ifcNoSuchLag {
		t.Errorf("ifconfig lagg0 after destroy: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, ifcNoSuchLag)
	}
	if out, _, code := p.ifconfig(t, "-l"); code != 0 || out != "\n" {
		t.Errorf("ifconfig -l after destroy: exit %d, %q; want an empty list", code, out)
	}
	tp.checkRestored(t)

	// The failover example on the same ports.
	ifcManPageFailover(t, p, wm0, wm1)
	ifcCheckLines(t, "failover after destroy", p.status(t),
		ifcFailoverStatus(tp.mac[wm0], "1500", wm0+" pri=1000 "+ifcTxFlags, wm1+" pri=2000 "+ifcRxFlags))
	ifcPingOK(t, tp, 3)
	ifcEchoOK(t, tp, 1<<20)
	p.stop(t)
	tp.checkRestored(t)
}

// TestIfconfigManPageFailover runs lagg(4)'s failover example on a ulagg
// that so far has only its services, and checks `ulagg ifconfig lagg0` line
// by line, `-v` with the counters of a failover lagg (only the priority
// port sends), `--json`, the socket from $ULAGG_SOCKET, and that the
// services answer the kernel host once the lagg exists.
func TestIfconfigManPageFailover(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]

	if out, errOut, code := p.ifconfig(t); code != 0 || out != "" || errOut != "" {
		t.Errorf("ifconfig with no lagg: exit %d, stdout %q, stderr %q; want nothing", code, out, errOut)
	}
	if out, errOut, code := p.ifconfig(t, "lagg0"); code != 1 || errOut != ifcNoSuchLag {
		t.Errorf("ifconfig lagg0 before create: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, ifcNoSuchLag)
	}
	ifcManPageFailover(t, p, wm0, wm1)
	plain := p.status(t)
	ifcCheckLines(t, "ifconfig lagg0", plain,
		ifcFailoverStatus(tp.mac[wm0], "1500", wm0+" pri=1000 "+ifcTxFlags, wm1+" pri=2000 "+ifcRxFlags))
	if out, errOut, code := p.runEnv(t, []string{"ULAGG_SOCKET=" + p.sock}, "ifconfig", "lagg0"); code != 0 || out != plain {
		t.Errorf("ifconfig lagg0 with $ULAGG_SOCKET: exit %d, stderr %q, output:\n%s\nwant:\n%s", code, errOut, out, plain)
	}
	if out, _, code := p.ifconfig(t, "-a"); code != 0 || out != plain {
		t.Errorf("ifconfig -a: exit %d, output:\n%s\nwant lagg0's status:\n%s", code, out, plain)
	}
	if out, _, code := p.ifconfig(t, "-l"); code != 0 || out != "lagg0\n" {
		t.Errorf("ifconfig -l: exit %d, %q; want \"lagg0\\n\"", code, out)
	}

	ifcPingOK(t, tp, 5)
	ifcEchoOK(t, tp, 1<<20)
	ifcDiscardOK(t, tp, 1<<20)

	verbose := ifcWithoutStackDrops(ifcWithoutDrops(p.status(t, "-v")))
	ifcCheckLines(t, "ifconfig -v lagg0", verbose, []string{
		ifcRunning + "1500",
		"\tlaggproto failover",
		"\t\tlaggfailover rx-all",
		"\t\ttx port=" + wm0 + ", failovers=0, last failover=0 ms",
		"\tlaggport:",
		"\t\t" + wm0 + " pri=1000 " + ifcTxFlags,
		"\t\t\tlink up, speed *, mtu 1500, address " + tp.mac[wm0],
		"\t\t\tinput: *",
		"\t\t\toutput: *",
		"\t\t" + wm1 + " pri=2000 " + ifcRxFlags,
		"\t\t\tlink up, speed *, mtu 1500, address " + tp.mac[wm1],
		"\t\t\tinput: *",
		"\t\t\toutput: 0 packets, 0 bytes",
		"\taddress: " + tp.mac[wm0],
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinput: *",
		"\toutput: *",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		ifcLinkLocal(tp.mac[wm0]),
	})
	if ls := strings.Split(verbose, "\n"); len(ls) > 8 && strings.HasPrefix(ls[8], "\t\t\toutput: 0 packets") {
		t.Errorf("ifconfig -v: %s sent nothing after ping and TCP:\n%s", wm0, verbose)
	}

	js, errOut, code := p.ifconfig(t, "--json", "lagg0")
	if code != 0 {
		t.Fatalf("ifconfig --json lagg0: exit %d, %s", code, errOut)
	}
	checkSchema(t, "status.schema.json", "ifconfig --json lagg0", []byte(js))
	var got []appliance.LaggJSON
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatalf("ifconfig --json does not parse: %v\n%s", err, js)
	}
	if len(got) != 1 {
		t.Fatalf("ifconfig --json lagg0: %d laggs, want 1:\n%s", len(got), js)
	}
	l := got[0]
	if l.Name != "lagg0" || l.Proto != "failover" || !l.Up || l.MTU != 1500 || l.MAC != tp.mac[wm0] ||
		!reflect.DeepEqual(l.Addresses, []string{"192.168.1.1/24"}) || l.TxPort != wm0 || l.RxAll == nil || !*l.RxAll {
		t.Errorf("ifconfig --json: got %+v", l)
	}
	type port struct {
		Name     string
		Priority uint16
		Flags    string
		Link     string
		MTU      uint32
		MAC      string
	}
	var ports []port
	for _, jp := range l.Ports {
		ports = append(ports, port{jp.Name, jp.Priority, jp.Flags.String(), jp.Link, jp.MTU, jp.MAC})
	}
	wantPorts := []port{
		{wm0, 1000, "0x1c<ACTIVE,COLLECTING,DISTRIBUTING>", "up", 1500, tp.mac[wm0]},
		{wm1, 2000, "0xc<ACTIVE,COLLECTING>", "up", 1500, tp.mac[wm1]},
	}
	if !reflect.DeepEqual(ports, wantPorts) {
		t.Errorf("ifconfig --json ports:\ngot  %+v\nwant %+v", ports, wantPorts)
	}
	if len(l.Ports) == 2 && (l.Ports[0].Counters.TxFrames == 0 || l.Ports[1].Counters.TxFrames != 0) {
		t.Errorf("ifconfig --json: %s sent %d frames, %s %d; want only %s sending",
			wm0, l.Ports[0].Counters.TxFrames, wm1, l.Ports[1].Counters.TxFrames, wm0)
	}
	p.stop(t)
	tp.checkRestored(t)
}

// ifcStep runs one ifconfig line under a running stream and checks the
// status after it, that the stream moves on, and that what the appliance
// sends leaves on port tx (its bridged peer receives it) and not on idle.
func ifcStep(t *testing.T, tp *ifcTopo, p *ifcProc, s *ifcStream, line, tx, idle string, want []string) {
	t.Helper()
	p.mustIfconfig(t, line)
	ifcCheckLines(t, "after "+line, p.status(t), want)
	ifcHasLines(t, "ifconfig -v after "+line, p.status(t, "-v"), "\t\ttx port="+tx+", *")
	peer := func(port string) string { return tp.peers[slices.Index(tp.ports, port)] }
	txAt, idleAt := tp.hostRxBytes(t, peer(tx)), tp.hostRxBytes(t, peer(idle))
	const more = 2 << 20
	s.progress(t, more, line)
	if d := tp.hostRxBytes(t, peer(tx)) - txAt; d < more/2 {
		t.Errorf("after %q: %s sent %d bytes while %d bytes were echoed, want it to carry the stream", line, tx, d, more)
	}
	if d := tp.hostRxBytes(t, peer(idle)) - idleAt; d > 256<<10 {
		t.Errorf("after %q: %s sent %d bytes, want it silent (the transmit port is %s)", line, idle, d, tx)
	}
}

// TestIfconfigPortChanges changes the ports of the man page's failover
// lagg while the kernel host streams through tcp-echo: a priority change
// moves transmission to the other port, removing the unused port keeps it
// there (the lagg's MAC follows the remaining port), and adding the port
// back with a better priority moves it back. Every byte comes back, with
// no reset.
func TestIfconfigPortChanges(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	ifcManPageFailover(t, p, wm0, wm1)
	s := ifcStartStream(t, tp, 71)
	s.progress(t, 1<<20, "start")

	ifcStep(t, tp, p, s, "lagg0 laggportpri "+wm1+" 500", wm1, wm0,
		ifcFailoverStatus(tp.mac[wm0], "1500", wm1+" pri=500 "+ifcTxFlags, wm0+" pri=1000 "+ifcRxFlags))
	ifcStep(t, tp, p, s, "lagg0 -laggport "+wm0, wm1, wm0,
		ifcFailoverStatus(tp.mac[wm1], "1500", wm1+" pri=500 "+ifcTxFlags))
	tp.checkRestored(t, wm0)
	ifcStep(t, tp, p, s, "lagg0 laggport "+wm0+" pri 100", wm0, wm1,
		ifcFailoverStatus(tp.mac[wm1], "1500", wm0+" pri=100 "+ifcTxFlags, wm1+" pri=500 "+ifcRxFlags))
	n := s.finish(t)
	t.Logf("measure: ifconfig port changes: %d bytes echoed intact across 3 changes", n)
	p.stop(t)
	tp.checkRestored(t)
}

// TestIfconfigProtoSwitch switches the man page's failover lagg to
// loadbalance and back under a stream from the kernel host: the ports stay,
// both distribute under loadbalance, failover's options come back, and
// every byte comes back with no reset.
func TestIfconfigProtoSwitch(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	ifcManPageFailover(t, p, wm0, wm1)
	s := ifcStartStream(t, tp, 72)
	s.progress(t, 1<<20, "start")

	p.mustIfconfig(t, "lagg0 laggproto loadbalance")
	ifcCheckLines(t, "after laggproto loadbalance", p.status(t), []string{
		ifcRunning + "1500",
		"\tlaggproto loadbalance",
		"\tlaggport:",
		"\t\t" + wm0 + " pri=1000 " + ifcTxFlags,
		"\t\t" + wm1 + " pri=2000 " + ifcTxFlags,
		"\taddress: " + tp.mac[wm0],
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		ifcLinkLocal(tp.mac[wm0]),
	})
	ifcHasLines(t, "ifconfig -v, loadbalance", p.status(t, "-v"), "\t\thash=l2,l3,l4")
	s.progress(t, 2<<20, "laggproto loadbalance")

	p.mustIfconfig(t, "lagg0 laggproto failover")
	ifcCheckLines(t, "after laggproto failover", p.status(t),
		ifcFailoverStatus(tp.mac[wm0], "1500", wm0+" pri=1000 "+ifcTxFlags, wm1+" pri=2000 "+ifcRxFlags))
	s.progress(t, 2<<20, "laggproto failover")
	s.finish(t)
	p.stop(t)
	tp.checkRestored(t)
}

// TestIfconfigMTU: `mtu 9000` reaches every port's host interface (as
// `ip -j link show` reads it) and a port added later; a port that leaves
// gets its own MTU and admin state back at once (ulifwm2 starts down), the
// others keep 9000; the kernel host still talks to the lagg; SIGTERM puts
// every MTU back.
func TestIfconfigMTU(t *testing.T) {
	tp := newIfcTopo(t, 3)
	wm0, wm1, wm2 := tp.ports[0], tp.ports[1], tp.ports[2]
	setLink(t, tp.app, wm2, "down")
	tp.orig[2] = mustLink(t, tp.app, wm2)
	p := startIfcProc(t, tp)
	ifcManPageFailover(t, p, wm0, wm1)

	p.mustIfconfig(t, "lagg0 mtu 9000")
	tp.waitMTU(t, map[string]int{wm0: 9000, wm1: 9000, wm2: 1500})
	ifcCheckLines(t, "after mtu 9000", p.status(t),
		ifcFailoverStatus(tp.mac[wm0], "9000", wm0+" pri=1000 "+ifcTxFlags, wm1+" pri=2000 "+ifcRxFlags))
	ifcHasLines(t, "ifconfig -v after mtu 9000", p.status(t, "-v"),
		"\t\t\tlink up, speed *, mtu 9000, address "+tp.mac[wm0],
		"\t\t\tlink up, speed *, mtu 9000, address "+tp.mac[wm1])

	p.mustIfconfig(t, "lagg0 laggport "+wm2+" pri 3000")
	tp.waitMTU(t, map[string]int{wm0: 9000, wm1: 9000, wm2: 9000})
	if li := mustLink(t, tp.app, wm2); !li.AdminUp {
		t.Errorf("%s: admin down after joining the lagg, want up", wm2)
	}
	p.mustIfconfig(t, "lagg0 -laggport "+wm2)
	tp.checkRestored(t, wm2)

	p.mustIfconfig(t, "lagg0 -laggport "+wm1)
	tp.checkRestored(t, wm1)
	tp.waitMTU(t, map[string]int{wm0: 9000, wm1: 1500, wm2: 1500})
	ifcCheckLines(t, "after -laggport "+wm1, p.status(t),
		ifcFailoverStatus(tp.mac[wm0], "9000", wm0+" pri=1000 "+ifcTxFlags))
	ifcPingOK(t, tp, 3)
	ifcEchoOK(t, tp, 1<<20)
	p.stop(t)
	tp.checkRestored(t)
}

// TestIfconfigErrors checks the exit code and message of each bad command
// and that the lagg's status is unchanged after it, then that the lagg
// still carries traffic.
func TestIfconfigErrors(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	ifcManPageFailover(t, p, wm0, wm1)
	before := p.status(t)
	tests := []struct {
		line string
		code int    // 2: refused by the client's parser; 1: by the appliance
		want string // the whole of stderr (ifcGlob)
	}{
		{"lagg0 frobnicate", 2, `ulagg ifconfig: usage: lagg0: unknown option "frobnicate"`},
		{"lagg0 inet 300.1.1.1", 2, `ulagg ifconfig: usage: lagg0: inet: "300.1.1.1" is not an address`},
		{"lagg0 laggport " + wm0 + " pri 70000", 2, "ulagg ifconfig: usage: lagg0: laggport " + wm0 + " pri: priority 70000 is out of range 0..65535"},
		{"lagg0 laggport nosuchif0", 1, "ulagg ifconfig: lagg0: port nosuchif0: *nosuchif0*not found"},
		{"lagg0 lagglacp maxports 2", 1, "ulagg ifconfig: lagg0: lagglacp maxports 2: lagglacp options need laggproto lacp; lagg0 runs failover"},
		{"lagg0 laggport " + wm1, 1, "ulagg ifconfig: lagg0: laggport " + wm1 + ": " + wm1 + " is already a port of lagg0 *"},
		{"lagg9 up", 1, "ulagg ifconfig: lagg9: no such lagg *"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.line, " ", "_"), func(t *testing.T) {
			out, errOut, code := p.ifconfig(t, tt.line)
			// A usage error (exit 2) ends with the hint ulagg prints for
			// every command's usage errors.
			msg, hint := strings.TrimSuffix(errOut, "\n"), ""
			if tt.code == 2 {
				msg, hint, _ = strings.Cut(msg, "\n")
			}
			if code != tt.code || out != "" || !strings.HasSuffix(errOut, "\n") || strings.Count(msg, "\n") != 0 ||
				!ifcGlob(tt.want, msg) || tt.code == 2 && hint != "Run 'ulagg ifconfig -h' for help." {
				t.Errorf("ulagg ifconfig %s: exit %d, stdout %q, stderr %q; want exit %d and stderr %q", tt.line, code, out, errOut, tt.code, tt.want)
			}
			if after := p.status(t); after != before {
				t.Errorf("status changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
	ifcPingOK(t, tp, 3)
	ifcEchoOK(t, tp, 256<<10)
	p.stop(t)
	tp.checkRestored(t)
}

// TestIfconfigSaveRestart: `ulagg save` (socket from $ULAGG_SOCKET) writes
// the configuration built with ifconfig to the file given with -c; after
// SIGTERM (exit 0, ports restored) and a restart from that file the lagg is
// back with the same ports, priorities, options, MTU and address, and
// carries traffic.
func TestIfconfigSaveRestart(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p := startIfcProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	ifcManPageFailover(t, p, wm0, wm1)
	p.mustIfconfig(t, "lagg0 laggfailover -rx-all mtu 4000")
	tp.waitMTU(t, map[string]int{wm0: 4000, wm1: 4000})
	before := p.status(t)
	ifcCheckLines(t, "before save", before, []string{
		ifcRunning + "4000",
		"\tlaggproto failover",
		"\t\tlaggfailover -rx-all",
		"\tlaggport:",
		"\t\t" + wm0 + " pri=1000 " + ifcTxFlags,
		"\t\t" + wm1 + " pri=2000 flags=0x4<ACTIVE>",
		"\taddress: " + tp.mac[wm0],
		"\tmedia: Ethernet autoselect",
		"\tstatus: active",
		"\tinet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0",
		ifcLinkLocal(tp.mac[wm0]),
	})

	out, errOut, code := p.runEnv(t, []string{"ULAGG_SOCKET=" + p.sock}, "save")
	if want := "saved the running configuration to " + p.file + "\n"; code != 0 || out != want || errOut != "" {
		t.Fatalf("ulagg save: exit %d, stdout %q, stderr %q; want 0 and %q", code, out, errOut, want)
	}
	saved, err := config.Load(p.file)
	if err != nil {
		t.Fatalf("the saved file does not load: %v", err)
	}
	want := config.NewLagg("lagg0")
	want.Proto = config.ProtoFailover
	want.Failover.RxAll = false
	want.MTU = 4000
	want.Addresses = []netip.Prefix{netip.MustParsePrefix("192.168.1.1/24")}
	want.Ports = []config.Port{
		{Name: wm0, Kind: "afpacket", Priority: 1000},
		{Name: wm1, Kind: "afpacket", Priority: 2000},
	}
	if len(saved.Laggs) != 1 || !reflect.DeepEqual(saved.Laggs[0], want) {
		t.Errorf("saved laggs:\ngot  %+v\nwant [%+v]", saved.Laggs, want)
	}
	wantSvc := []config.Service{{Kind: "tcp-echo", Port: echoPort}, {Kind: "tcp-discard", Port: discardPort}}
	if saved.Control.Socket != p.sock || !reflect.DeepEqual(saved.Services, wantSvc) {
		t.Errorf("saved control socket %q and services %+v; want %q and %+v", saved.Control.Socket, saved.Services, p.sock, wantSvc)
	}

	p.stop(t)
	tp.checkRestored(t)
	p.start(t)
	after := p.waitStatus(t, 10*time.Second, ifcRunning+"4000")
	ifcCheckLines(t, "after the restart", after, strings.Split(strings.TrimSuffix(before, "\n"), "\n"))
	tp.waitMTU(t, map[string]int{wm0: 4000, wm1: 4000})
	ifcPingOK(t, tp, 3)
	ifcEchoOK(t, tp, 1<<20)
	p.stop(t)
	tp.checkRestored(t)
}
