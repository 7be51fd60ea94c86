package integration

// The operator commands on the ulagg binary run as systemd's unit runs it:
// an unprivileged user with CAP_NET_ADMIN and CAP_NET_RAW only, with
// $NOTIFY_SOCKET and $WATCHDOG_USEC. Laggport -active, ulagg hash,
// ifconfig -z, link-failure counts, save, and the control group's
// read-only role, on the ifcTopo veths (ifconfig_fixture_test.go).

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// The unprivileged identities of the test: ulagg runs as nobody:nogroup,
// whose group is the control group; a reader has it as a supplementary
// group; a stranger does not.
const (
	opUID, opGID = 65534, 65534
	opReaderUID  = 4243
	opOtherUID   = 4244
)

// opNotify collects what ulagg sends to $NOTIFY_SOCKET.
type opNotify struct {
	mu   sync.Mutex
	msgs []string
}

func (n *opNotify) has(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if strings.HasPrefix(m, prefix) {
			return true
		}
	}
	return false
}

func (n *opNotify) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, m := range n.msgs {
		if strings.HasPrefix(m, prefix) {
			c++
		}
	}
	return c
}

// startOpProc runs ulagg in tp's appliance namespace through setpriv, as
// nobody with only CAP_NET_ADMIN and CAP_NET_RAW (ambient), with a
// watchdog of 1 s.
func startOpProc(t *testing.T, tp *ifcTopo) (*ifcProc, *opNotify) {
	t.Helper()
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	// Everything nobody touches is in a directory it owns, binary included
	// (buildULagg's directory is root's, 0700).
	dir, err := os.MkdirTemp("", testPrefix+"-op")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "ulagg")
	data, err := os.ReadFile(buildULagg(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, opUID, opGID); err != nil {
		t.Fatal(err)
	}
	p := &ifcProc{bin: bin, ns: tp.app, file: filepath.Join(dir, "ulagg.toml"), sock: filepath.Join(dir, "ulagg.sock")}
	cfg := fmt.Sprintf(`[control]
socket = %q
runtime_dir = %q
group = "%d"

[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["%s/24"]

[[lagg.port]]
name = %q
priority = 1000

[[lagg.port]]
name = %q
priority = 2000

[[service]]
kind = "tcp-echo"
port = %d
`, p.sock, filepath.Join(dir, "run"), opGID, ifcLaggIP, tp.ports[0], tp.ports[1], echoPort)
	if err := os.WriteFile(p.file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p.file, opUID, opGID); err != nil {
		t.Fatal(err)
	}
	notifyPath := filepath.Join(dir, "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(notifyPath, opUID, opGID); err != nil {
		t.Fatal(err)
	}
	n := &opNotify{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := nc.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, string(buf[:k]))
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { nc.Close(); <-done })

	cmd := exec.Command("ip", "netns", "exec", p.ns, setpriv,
		"--reuid="+strconv.Itoa(opUID), "--regid="+strconv.Itoa(opGID), "--clear-groups",
		"--inh-caps=-all,+net_admin,+net_raw", "--ambient-caps=-all,+net_admin,+net_raw",
		"--bounding-set=-all,+net_admin,+net_raw",
		p.bin, "run", "-c", p.file, "--log-level", "info")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=1000000")
	if !p.launch(t, cmd, func() bool { return n.has("READY=1") }) {
		n.mu.Lock()
		defer n.mu.Unlock()
		t.Fatalf("no READY=1 within 10s (notify: %q)", n.msgs)
	}
	return p, n
}

// opStatus is what the test reads of `ulagg ifconfig --json lagg0`.
type opStatus struct {
	TxPort   string `json:"tx_port"`
	Counters struct {
		TxFrames uint64 `json:"tx_frames"`
	} `json:"counters"`
	Ports []struct {
		Name         string  `json:"name"`
		Disabled     bool    `json:"disabled"`
		LinkFailures uint64  `json:"link_failures"`
		LastChange   *string `json:"last_change"`
	} `json:"ports"`
}

func opJSON(t *testing.T, p *ifcProc) opStatus {
	t.Helper()
	out := p.status(t, "--json")
	var sts []opStatus
	if err := json.Unmarshal([]byte(out), &sts); err != nil || len(sts) != 1 {
		t.Fatalf("ifconfig --json lagg0: %v\n%s", err, out)
	}
	return sts[0]
}

// hash runs `ulagg hash` and returns the port it names.
func opHash(t *testing.T, p *ifcProc, args ...string) string {
	t.Helper()
	out, errOut, code := p.run(t, append([]string{"hash", "-s", p.sock, "lagg0"}, args...)...)
	if code != 0 {
		t.Fatalf("ulagg hash %v: exit %d, %s", args, code, errOut)
	}
	// "lagg0: tcp A -> B: PORT (hash 0x...)"
	f := strings.Fields(out)
	if len(f) < 6 {
		t.Fatalf("ulagg hash %v: %q", args, out)
	}
	return f[len(f)-3]
}

// opAs runs the ulagg CLI as another user with the given groups.
func opAs(t *testing.T, p *ifcProc, uid int, groups []uint32, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid), Groups: groups}}
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

func TestOperatorUnprivileged(t *testing.T) {
	tp := newIfcTopo(t, 2)
	p, n := startOpProc(t, tp)
	wm0, wm1 := tp.ports[0], tp.ports[1]
	echo := func(what string) {
		t.Helper()
		testkit.CheckEcho(t, kernelDialer(tp.host, net.JoinHostPort(ifcLaggIP, strconv.Itoa(echoPort))), testkit.Bytes(7, 4096))
		if t.Failed() {
			t.Fatalf("echo %s failed", what)
		}
	}

	// Who runs it: nobody, with exactly CAP_NET_ADMIN and CAP_NET_RAW.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d", opUID, opUID), "CapEff:\t0000000000003000", "CapBnd:\t0000000000003000"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("/proc/PID/status lacks %q:\n%s", want, status)
		}
	}
	echo("as nobody")
	if !testkit.Poll(3*time.Second, func() bool { return n.count("WATCHDOG=1") >= 2 }) {
		t.Errorf("fewer than 2 WATCHDOG=1 within 3 s at WATCHDOG_USEC=1000000: %q", n.msgs)
	}

	// laggport -active: out of service, traffic moves, hash follows.
	if got := opHash(t, p, "tcp", ifcLaggIP+":7", ifcHostIP+":40000"); got != wm0 {
		t.Errorf("hash before: %s, want %s", got, wm0)
	}
	p.mustIfconfig(t, "lagg0 laggport "+wm0+" -active")
	st := opJSON(t, p)
	if st.TxPort != wm1 || !st.Ports[0].Disabled || st.Ports[1].Disabled {
		t.Errorf("%s disabled: tx %s, disabled %v/%v", wm0, st.TxPort, st.Ports[0].Disabled, st.Ports[1].Disabled)
	}
	if out := p.status(t); !strings.Contains(out, wm0+" pri=1000 flags=0x0 <DISABLED>") {
		t.Errorf("status does not show %s <DISABLED>:\n%s", wm0, out)
	}
	if got := opHash(t, p, "tcp", ifcLaggIP+":7", ifcHostIP+":40000"); got != wm1 {
		t.Errorf("hash with %s disabled: %s, want %s", wm0, got, wm1)
	}
	before := tp.hostRxBytes(t, tp.peers[0])
	echo("with " + wm0 + " disabled")
	if after := tp.hostRxBytes(t, tp.peers[0]); after-before > 1024 {
		t.Errorf("the disabled port sent %d bytes during the echo", after-before)
	}
	if _, errOut, code := p.run(t, "save", "-s", p.sock); code != 0 {
		t.Fatalf("save: %s", errOut)
	}
	if data, err := os.ReadFile(p.file); err != nil || !strings.Contains(string(data), "disabled = true") {
		t.Errorf("saved file (%v) lacks disabled = true:\n%s", err, data)
	}
	if _, errOut, code := p.run(t, "reload", "-s", p.sock); code != 0 {
		t.Fatalf("reload: %s", errOut)
	}
	if !testkit.Poll(2*time.Second, func() bool { return n.has("RELOADING=1\nMONOTONIC_USEC=") && n.count("READY=1") >= 2 }) {
		t.Errorf("no RELOADING=1 then READY=1 around the reload (notify: %q)", n.msgs)
	}

	// A link failure is counted, with its time.
	t0 := time.Now().Add(-time.Second)
	if err := lab.Run("ip", "-n", tp.host, "link", "set", tp.peers[1], "down"); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(5*time.Second, func() bool { return opJSON(t, p).Ports[1].LinkFailures == 1 }) {
		t.Errorf("no link failure counted on %s", wm1)
	}
	if err := lab.Run("ip", "-n", tp.host, "link", "set", tp.peers[1], "up"); err != nil {
		t.Fatal(err)
	}
	p.mustIfconfig(t, "lagg0 laggport "+wm0+" active")
	st = opJSON(t, p)
	if lc := st.Ports[1].LastChange; lc == nil {
		t.Errorf("%s: no last change", wm1)
	} else if ts, err := time.Parse(time.RFC3339Nano, *lc); err != nil || ts.Before(t0) {
		t.Errorf("%s: last change %q (%v), want after %v", wm1, *lc, err, t0)
	}
	if st.TxPort != wm0 || st.Ports[1].LinkFailures != 1 || st.Ports[0].LinkFailures != 0 {
		t.Errorf("%s enabled: tx %s, link failures %d/%d; want %s, 0/1", wm0, st.TxPort, st.Ports[0].LinkFailures, st.Ports[1].LinkFailures, wm0)
	}
	echo("after " + wm0 + " came back")

	// -z: shown, then zeroed.
	if out := p.status(t, "-vz"); !strings.Contains(out, "\toutput: ") || strings.Contains(out, "\n\toutput: 0 packets") {
		t.Errorf("ifconfig -vz did not show the counters first:\n%s", out)
	}
	if got := opJSON(t, p).Counters.TxFrames; got > 5 {
		t.Errorf("after -z: %d frames sent, want about 0", got)
	}

	// The control group reads; changes need root or nobody; others nothing.
	reader := []uint32{100, opGID}
	if out, code := opAs(t, p, opReaderUID, reader, "ifconfig", "-s", p.sock, "-v", "lagg0"); code != 0 || !strings.Contains(out, "laggproto failover") {
		t.Errorf("reader status: exit %d\n%s", code, out)
	}
	if out, code := opAs(t, p, opReaderUID, reader, "hash", "-s", p.sock, "lagg0", "udp", ifcLaggIP+":1", ifcHostIP+":2"); code != 0 || !strings.Contains(out, wm0) {
		t.Errorf("reader hash: exit %d\n%s", code, out)
	}
	if out, code := opAs(t, p, opReaderUID, reader, "ifconfig", "-s", p.sock, "lagg0", "laggport", wm1, "-active"); code != 1 || !strings.Contains(out, "may only read") {
		t.Errorf("reader ifconfig: exit %d\n%s", code, out)
	}
	if out, code := opAs(t, p, opOtherUID, nil, "ifconfig", "-s", p.sock, "-l"); code != 1 || !strings.Contains(out, "permission denied") {
		t.Errorf("stranger: exit %d\n%s", code, out)
	}
	if opJSON(t, p).Ports[1].Disabled {
		t.Error("the reader's ifconfig disabled a port")
	}

	p.stop(t)
	if !n.has("STOPPING=1") {
		t.Errorf("no STOPPING=1 (notify: %q)", n.msgs)
	}
	tp.checkRestored(t)
}
