package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/lagg"
)

// An Open vSwitch LACP partner (see shared/notes/lab-lacp-partner.md):
// ovsdb-server and ovs-vswitchd started by hand with their own run
// directory under t.TempDir(), the userspace datapath (datapath_type=netdev;
// this kernel has no openvswitch module), vswitchd inside the switch
// namespace so its TAPs stay there. The switch has one LACP bond whose
// members are veths to the lagg's ports, and one plain port to a kernel
// host:
//
//	<lab>-ol: ulitoXp0..N-1 (lagg ports) ─veth─ <lab>-osw: ulitoXs0..N-1 (bond ulitobond)
//	                                            <lab>-osw: ulitosh ─veth─ <lab>-oh: ulitoh0 hostIP
//
// Namespaces and interfaces start with testPrefix so TestMain's leftover
// check covers them; the lab's name carries a hash of the test name, so
// they never clash with other tests' topologies.
type ovsSwitch struct {
	run    string   // run directory: db, sockets, pid and log files
	sw     string   // namespace of ovs-vswitchd
	lag    string   // namespace of the lagg's ports
	host   string   // namespace of the kernel host
	ports  []string // lagg side
	member []string // switch side, bond members
	bond   string
	lab    *lab.Lab
	tag    rune // this topology's letter in interface names
	spares int
	// rogueBridge: ovsRogueBridge exists (addLACPPort).
	rogueBridge bool
}

// Interface names of the OVS topology (15 characters at most).
const (
	ovsBridge = testPrefix + "obr"
	// ovsRogueBridge holds LACP ports that lead nowhere (addLACPPort).
	ovsRogueBridge = testPrefix + "orbr"
	ovsBond        = testPrefix + "obond"
	ovsHostPort    = testPrefix + "osh"
	ovsHostVeth    = testPrefix + "oh0"
)

// ovsRequire fails (CI=true) or skips the test unless it runs as root with
// the Open vSwitch programs installed.
func ovsRequire(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, prog := range []string{"ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-appctl"} {
		if _, err := exec.LookPath(prog); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s not installed (CI=true: failing instead of skipping; apt-get install openvswitch-switch)", prog)
			}
			t.Skipf("%s not installed (apt-get install openvswitch-switch)", prog)
		}
	}
	if _, err := os.Stat(ovsSchema); err != nil {
		t.Fatalf("OVS schema: %v", err)
	}
}

// ovsSeq numbers the topologies this process builds.
var ovsSeq atomic.Int32

const ovsSchema = "/usr/share/openvswitch/vswitch.ovsschema"

// ovsStart builds the topology with n bond members and starts the switch
// with LACP active, balance-tcp and lacp-time ltime ("fast" or "slow").
// Everything is stopped and deleted when the test ends, also on failure.
func ovsStart(t *testing.T, n int, ltime string) *ovsSwitch {
	t.Helper()
	return ovsStartWith(t, ovsConfig{members: n, lacp: "active", mode: "balance-tcp", lacpTime: ltime})
}

// ovsConfig is the switch's bond: its member count, lacp (active, passive
// or off), bond_mode (balance-tcp, balance-slb, active-backup) and
// other_config:lacp-time.
type ovsConfig struct {
	members        int
	lacp, mode     string
	lacpTime       string
	rebalanceNever bool // other_config:bond-rebalance-interval=0
}

// ovsStartWith is ovsStart with the bond configured by c.
func ovsStartWith(t *testing.T, c ovsConfig) *ovsSwitch {
	t.Helper()
	n := c.members
	ovsRequire(t)
	o := newOVSSwitch(t)
	o.addMembers(t, n)
	// Quirk 1 of the notes: the kernel host's veth offloads TCP
	// segmentation and checksums, and OVS, reading with AF_PACKET, forwards
	// what it gets as it is. The 64 KB TSO frames are what breaks: OVS
	// drops them ("Dropped packet: Too big"). The partial checksums alone
	// would pass (measured with `tso off gso off` only: the 256 MiB echo is
	// intact), since the lagg's AF_PACKET ports claim RX checksum offload
	// and gVisor does not check them. tx off turns off both.
	if _, err := exec.LookPath("ethtool"); err == nil {
		ovsRun(t, "ip", "netns", "exec", o.host, "ethtool", "-K", ovsHostVeth, "tx", "off")
	} else if os.Getenv("CI") == "true" {
		t.Fatal("ethtool not installed (CI=true)")
	} else {
		t.Skip("ethtool not installed: the kernel host's TSO frames would not cross OVS")
	}

	o.startDaemons(t)
	args := append([]string{"add-bond", ovsBridge, ovsBond}, o.member...)
	o.vsctl(t, append(args, "lacp="+c.lacp, "bond_mode="+c.mode)...)
	if c.lacpTime != "" {
		o.vsctl(t, "set", "port", ovsBond, "other_config:lacp-time="+c.lacpTime)
	}
	if c.rebalanceNever {
		o.vsctl(t, "set", "port", ovsBond, "other_config:bond-rebalance-interval=0")
	}
	o.vsctl(t, "add-port", ovsBridge, ovsHostPort)
	return o
}

// newOVSSwitch makes the switch's, the lagg's and the kernel host's
// namespaces and the host's veth into the switch.
func newOVSSwitch(t *testing.T) *ovsSwitch {
	t.Helper()
	lb := newLab(t)
	o := &ovsSwitch{bond: ovsBond, lab: lb}
	var err error
	for _, ns := range []struct {
		p    *string
		name string
	}{{&o.sw, "osw"}, {&o.lag, "ol"}, {&o.host, "oh"}} {
		if *ns.p, err = lb.AddNS(ns.name); err != nil {
			t.Fatal(err)
		}
	}
	// The host's veth first: it shifts the switch side's ifindexes, so a
	// lagg port and its peer never share one. A veth whose ifindex equals
	// its peer's (each in a fresh namespace) has its carrier changes
	// treated as non-urgent by the kernel's linkwatch, which then batches
	// them for up to a second (measured: 0.47-0.8 s late RTM_NEWLINK);
	// that would time the kernel, not the lagg. Physical NICs are in that
	// non-urgent class too.
	if err := lb.Veth(ovsHostVeth, o.host, ovsHostPort, o.sw); err != nil {
		t.Fatal(err)
	}
	return o
}

// addMembers creates n veth pairs, port in the lagg's namespace, member in
// the switch's, named apart from the last topology's, and puts hostIP on
// the host's veth.
func (o *ovsSwitch) addMembers(t *testing.T, n int) {
	t.Helper()
	// Port names differ from one topology to the next (ulitoap0,
	// ulitobp0, ...). At the time of writing the lagg's process-wide port
	// registry can keep a closed port's entry (releasePort unclaims after
	// Close, when Identity no longer sees the namespace), and a new
	// namespace may get the old one's inode: "already a port of lagg0".
	o.tag = 'a' + rune((ovsSeq.Add(1)-1)%26)
	for i := range n {
		p, m := fmt.Sprintf("%so%cp%d", testPrefix, o.tag, i), fmt.Sprintf("%so%cs%d", testPrefix, o.tag, i)
		if err := o.lab.Veth(p, o.lag, m, o.sw); err != nil {
			t.Fatal(err)
		}
		o.ports, o.member = append(o.ports, p), append(o.member, m)
	}
	ovsRun(t, "ip", "-n", o.host, "addr", "add", hostIP+"/24", "dev", ovsHostVeth)
}

// startDaemons runs ovsdb-server and ovs-vswitchd (in the switch's
// namespace) from a run directory of the test's, and adds the userspace
// bridge; their logs are printed if the test fails.
func (o *ovsSwitch) startDaemons(t *testing.T) {
	t.Helper()
	o.run = t.TempDir() // removed after the daemons stop (cleanups run last-in first-out)
	if len(o.ctl("ovs-vswitchd")) > 100 {
		t.Fatalf("run directory %s: too long for unix sockets", o.run)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"ovs-vswitchd.log", "ovsdb-server.log"} {
				if b, err := os.ReadFile(filepath.Join(o.run, f)); err == nil {
					t.Logf("%s (end):\n%s", f, tailString(string(b), 4<<10))
				}
			}
		}
	})
	ovsRun(t, "ovsdb-tool", "create", filepath.Join(o.run, "conf.db"), ovsSchema)
	o.daemon(t, "ovsdb-server", nil, filepath.Join(o.run, "conf.db"), "--remote=punix:"+o.db())
	o.vsctl(t, "--no-wait", "init")
	o.daemon(t, "ovs-vswitchd", []string{"ip", "netns", "exec", o.sw}, "unix:"+o.db())
	o.vsctl(t, "add-br", ovsBridge, "--", "set", "bridge", ovsBridge, "datapath_type=netdev")
}

// spare adds a veth pair like the bond members' — port in the lagg's
// namespace, member in the switch's — that is in no bond yet, and returns
// both names.
func (o *ovsSwitch) spare(t *testing.T) (port, member string) {
	t.Helper()
	o.spares++
	port = fmt.Sprintf("%so%cx%d", testPrefix, o.tag, o.spares)
	member = fmt.Sprintf("%so%cy%d", testPrefix, o.tag, o.spares)
	if err := o.lab.Veth(port, o.lag, member, o.sw); err != nil {
		t.Fatal(err)
	}
	return port, member
}

// addLACPPort makes member a one-link LACP port (active, fast) whose actor
// announces system priority prio and system ID sysid: another LACP partner
// than the bond, as a rogue or miscabled link. It is on a bridge of its
// own, which leads nowhere: what the lagg sends there is lost.
func (o *ovsSwitch) addLACPPort(t *testing.T, member string, prio int, sysid string) {
	t.Helper()
	if !o.rogueBridge {
		o.vsctl(t, "add-br", ovsRogueBridge, "--", "set", "bridge", ovsRogueBridge, "datapath_type=netdev")
		o.rogueBridge = true
	}
	o.vsctl(t, "add-port", ovsRogueBridge, member, "--", "set", "port", member, "lacp=active",
		"other_config:lacp-time=fast", fmt.Sprintf("other_config:lacp-system-priority=%d", prio),
		"other_config:lacp-system-id="+sysid)
}

// setActiveMember makes member the bond's active member (active-backup,
// balance-slb).
func (o *ovsSwitch) setActiveMember(t *testing.T, member string) {
	t.Helper()
	if _, err := o.appctl("bond/set-active-member", o.bond, member); err != nil {
		t.Fatal(err)
	}
}

// activeMember returns the bond's active member, as bond/show says.
func (o *ovsSwitch) activeMember() string {
	out, err := o.appctl("bond/show", o.bond)
	if err != nil {
		return ""
	}
	// "member ulitoas1: enabled", then "  active member" under the active one.
	var cur string
	for _, line := range strings.Split(out, "\n") {
		l := strings.TrimSpace(line)
		if name, ok := strings.CutPrefix(l, "member "); ok {
			cur, _, _ = strings.Cut(name, ":")
		}
		if l == "active member" {
			return cur
		}
	}
	return ""
}

func (o *ovsSwitch) db() string { return filepath.Join(o.run, "db.sock") }

func (o *ovsSwitch) ctl(d string) string { return filepath.Join(o.run, d+".ctl") }

// ovsEnv points the OVS programs at the run directory, so nothing lands
// in the system's /var/run/openvswitch.
func (o *ovsSwitch) env() []string {
	return append(os.Environ(), "OVS_RUNDIR="+o.run, "OVS_LOGDIR="+o.run, "OVS_DBDIR="+o.run)
}

// daemon starts OVS daemon d (with --detach; its parent returns once it is
// ready) behind the wrapper command, and stops it when the test ends: exit
// through its control socket, wait for the pid to go, SIGKILL after 5 s.
func (o *ovsSwitch) daemon(t *testing.T, d string, wrap []string, args ...string) {
	t.Helper()
	pidfile := filepath.Join(o.run, d+".pid")
	argv := append(append(wrap, d), args...)
	argv = append(argv, "--pidfile="+pidfile, "--unixctl="+o.ctl(d),
		"--log-file="+filepath.Join(o.run, d+".log"), "--detach", "--no-chdir")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = o.env()
	out, err := cmd.CombinedOutput()
	// Register the stop before checking: a daemon may be up despite an error.
	t.Cleanup(func() { o.stop(t, d, pidfile) })
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

func (o *ovsSwitch) stop(t *testing.T, d, pidfile string) {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return // never started
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Errorf("%s: bad pid file %q", d, b)
		return
	}
	cmd := exec.Command("ovs-appctl", "-t", o.ctl(d), "exit")
	cmd.Env = o.env()
	if err := cmd.Run(); err != nil {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	// ovs-appctl exit returns before the daemon is gone (quirk 6).
	deadline := time.Now().Add(5 * time.Second)
	for ovsAlive(pid) {
		if time.Now().After(deadline) {
			t.Errorf("%s (pid %d) still running 5 s after exit; killing it", d, pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			time.Sleep(100 * time.Millisecond)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ovsAlive reports whether pid exists and is not a zombie.
func ovsAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "State:") {
			return !strings.Contains(line, "Z (zombie)")
		}
	}
	return true
}

func (o *ovsSwitch) vsctl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := o.cmd("ovs-vsctl", append([]string{"--db=unix:" + o.db(), "--timeout=10"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// appctl runs an ovs-appctl command against ovs-vswitchd.
func (o *ovsSwitch) appctl(args ...string) (string, error) {
	return o.cmd("ovs-appctl", append([]string{"-t", o.ctl("ovs-vswitchd")}, args...)...)
}

func (o *ovsSwitch) cmd(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = o.env()
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func ovsRun(t *testing.T, args ...string) {
	t.Helper()
	if err := lab.Run(args...); err != nil {
		t.Fatal(err)
	}
}

// ovsLACP is what `ovs-appctl lacp/show` says about the bond.
type ovsLACP struct {
	sysID   string // OVS's own system ID
	status  string // "active negotiated", ...
	time    string // lacp_time: fast or slow
	members map[string]*ovsMember
}

// ovsMember is one bond member in lacp/show.
type ovsMember struct {
	name         string
	status       string // "current attached", "defaulted detached", ...
	mayEnable    bool
	actorState   []string
	partnerSysID string
	partnerState []string
}

// current reports whether OVS has live LACP information from the member's
// partner and the member is attached.
func (m *ovsMember) current() bool {
	f := strings.Fields(m.status)
	return len(f) > 0 && f[0] == "current" && strings.Contains(m.status, "attached")
}

// distributing reports whether both ends of the member's link are
// collecting and distributing, as OVS sees them, and OVS may use it.
func (m *ovsMember) distributing() bool {
	has := func(s []string, w string) bool {
		for _, x := range s {
			if x == w {
				return true
			}
		}
		return false
	}
	return m.mayEnable && has(m.actorState, "distributing") && has(m.partnerState, "distributing") &&
		has(m.actorState, "synchronized") && has(m.partnerState, "synchronized")
}

// lacpShow runs and parses `ovs-appctl lacp/show BOND`.
func (o *ovsSwitch) lacpShow() (*ovsLACP, error) {
	out, err := o.appctl("lacp/show", o.bond)
	if err != nil {
		return nil, err
	}
	return parseLACPShow(out)
}

func parseLACPShow(out string) (*ovsLACP, error) {
	r := &ovsLACP{members: map[string]*ovsMember{}}
	var cur *ovsMember
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "member: "); ok {
			name, status, _ := strings.Cut(rest, ": ")
			cur = &ovsMember{name: name, status: status}
			r.members[name] = cur
			continue
		}
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch {
		case cur == nil && key == "sys_id":
			r.sysID = val
		case cur == nil && key == "status":
			r.status = val
		case cur == nil && key == "lacp_time":
			r.time = val
		case cur == nil:
		case key == "may_enable":
			cur.mayEnable = val == "true"
		case key == "actor state":
			cur.actorState = strings.Fields(val)
		case key == "partner state":
			cur.partnerState = strings.Fields(val)
		case key == "partner sys_id":
			cur.partnerSysID = val
		}
	}
	if len(r.members) == 0 {
		return nil, fmt.Errorf("lacp/show: no members in %q", out)
	}
	return r, nil
}

// allDistributing reports whether OVS shows every bond member current,
// attached and distributing with partner sysid.
func (o *ovsSwitch) allDistributing(sysid string) bool {
	s, err := o.lacpShow()
	if err != nil || len(s.members) != len(o.member) {
		return false
	}
	for _, m := range s.members {
		if !m.current() || !m.distributing() || !strings.EqualFold(m.partnerSysID, sysid) {
			return false
		}
	}
	return true
}

// diag logs what the switch, the host and the lagg counted, for a failure.
func (o *ovsSwitch) diag(t *testing.T, l *lagg.Lagg) {
	t.Helper()
	st := l.Status()
	for _, ps := range st.Ports {
		t.Logf("ulagg %s: link %v flags %v counters %+v lacp mux %s rx %s", ps.Name, ps.LinkUp, ps.Flags, ps.Counters, ps.LACP.Mux, ps.LACP.Rx)
	}
	t.Logf("ulagg lagg: up %v counters %+v", st.Up, st.Counters)
	if out, err := o.appctl("dpctl/show", "-s"); err == nil {
		t.Logf("ovs dpctl/show -s:\n%s", out)
	}
	if out, err := o.appctl("bond/show", o.bond); err == nil {
		t.Logf("ovs bond/show:\n%s", out)
	}
	if out, err := lab.Output("ip", "netns", "exec", o.host, "ss", "-tni"); err == nil {
		t.Logf("host ss -tni:\n%s", out)
	}
}

func tailString(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
