package integration

// Fixtures of ifconfig_test.go: the ulagg binary run inside a test namespace
// and driven only through `ulagg ifconfig` (and save), on veths whose far
// ends are bridged to a kernel host. Identifiers start with ifc so that they
// do not meet other files' helpers.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// ifcPrefix starts the names of the namespaces and interfaces of these
// tests ("ulif", not testPrefix: TestMain's leftover check is for the other
// files; ifcTopo checks its own).
const ifcPrefix = "ulif"

// The man page's addresses; they exist only inside the test's namespaces.
const (
	ifcLaggIP = "192.168.1.1"
	ifcHostIP = "192.168.1.2"
)

var ifcLaggAddr = netip.MustParseAddr(ifcLaggIP)

// ifcTopo is the kernel host (namespace host, ifcHostIP on a bridge over
// ulifh0..) wired by veths to the appliance's namespace (app), where
// ulifwm0.. stand in for the man page's wm0 and wm1.
type ifcTopo struct {
	lab   *lab.Lab
	host  string
	app   string
	ports []string          // ulifwm0.. in app
	peers []string          // ulifh0.. in host, bridged
	orig  []lab.LinkInfo    // the ports as created
	mac   map[string]string // port -> its own MAC
}

// newIfcTopo builds the topology with n ports; it is deleted when the test
// ends, failed or not. The namespaces are named after a hash of the test's
// name and this process's pid, so that two test runs at once do not meet.
func newIfcTopo(t *testing.T, n int) *ifcTopo {
	t.Helper()
	requireRoot(t)
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%d", t.Name(), os.Getpid())
	lb, err := lab.New(fmt.Sprintf("%s%08x", ifcPrefix, h.Sum32()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := lb.Close(); err != nil {
			t.Errorf("lab cleanup: %v", err)
		}
		left, err := lab.Namespaces()
		if err != nil {
			t.Errorf("listing namespaces: %v", err)
		}
		for _, ns := range left {
			if strings.HasPrefix(ns, lb.Prefix+"-") {
				t.Errorf("namespace %s left after the test", ns)
			}
		}
		links, err := lab.Links("")
		if err != nil {
			t.Errorf("listing interfaces: %v", err)
		}
		for _, l := range links {
			if strings.HasPrefix(l.Name, ifcPrefix) {
				t.Errorf("interface %s left in the root namespace", l.Name)
			}
		}
	})
	tp := &ifcTopo{lab: lb, mac: map[string]string{}}
	if tp.host, err = lb.AddNS("h"); err != nil {
		t.Fatal(err)
	}
	if tp.app, err = lb.AddNS("a"); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		p, peer := fmt.Sprintf("%swm%d", ifcPrefix, i), fmt.Sprintf("%sh%d", ifcPrefix, i)
		if err := lb.Veth(p, tp.app, peer, tp.host); err != nil {
			t.Fatal(err)
		}
		tp.ports, tp.peers = append(tp.ports, p), append(tp.peers, peer)
	}
	if err := lb.Bridge(tp.host, ifcPrefix+"br", ifcHostIP+"/24", tp.peers...); err != nil {
		t.Fatal(err)
	}
	for _, p := range tp.ports {
		li := mustLink(t, tp.app, p)
		tp.orig = append(tp.orig, li)
		tp.mac[p] = li.MAC
	}
	return tp
}

// mtus returns the MTU of each port as `ip -n NS -j link show` reports it.
func (tp *ifcTopo) mtus(t *testing.T) map[string]int {
	t.Helper()
	links, err := lab.Links(tp.app)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]int{}
	for _, l := range links {
		m[l.Name] = l.MTU
	}
	return m
}

// waitMTU waits until every port has the MTU want gives it.
func (tp *ifcTopo) waitMTU(t *testing.T, want map[string]int) {
	t.Helper()
	var got map[string]int
	if !testkit.Poll(5*time.Second, func() bool {
		got = tp.mtus(t)
		for p, w := range want {
			if got[p] != w {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("port MTUs %v, want %v", got, want)
	}
}

// checkRestored checks that every port has its original MTU, MAC, admin
// state and promiscuity.
func (tp *ifcTopo) checkRestored(t *testing.T, ports ...string) {
	t.Helper()
	if len(ports) == 0 {
		ports = tp.ports
	}
	for i, p := range tp.ports {
		if !ifcContains(ports, p) {
			continue
		}
		o := tp.orig[i]
		var got lab.LinkInfo
		if !testkit.Poll(3*time.Second, func() bool {
			var err error
			got, err = lab.Link(tp.app, p)
			return err == nil && got.MTU == o.MTU && got.MAC == o.MAC && got.AdminUp == o.AdminUp && got.Promiscuity == o.Promiscuity
		}) {
			t.Errorf("%s: mtu %d mac %s admin-up %v promiscuity %d; want its own: mtu %d mac %s admin-up %v promiscuity %d",
				p, got.MTU, got.MAC, got.AdminUp, got.Promiscuity, o.MTU, o.MAC, o.AdminUp, o.Promiscuity)
		}
	}
}

func ifcContains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// hostRxBytes is how many bytes host interface dev (a bridged peer) has
// received, that is, what the appliance sent on the port facing it.
func (tp *ifcTopo) hostRxBytes(t *testing.T, dev string) int64 {
	t.Helper()
	out, err := lab.Output("ip", "-n", tp.host, "-s", "-j", "link", "show", "dev", dev)
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Stats struct {
			Rx struct {
				Bytes int64 `json:"bytes"`
			} `json:"rx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show dev %s: %v\n%s", dev, err, out)
	}
	return links[0].Stats.Rx.Bytes
}

// ifcProc is `ulagg run -c FILE` inside the appliance's namespace.
type ifcProc struct {
	bin, file, sock, ns string
	cmd                 *exec.Cmd
	out                 *syncBuffer
	exited              chan struct{}
	waitErr             error
}

// ifcServices is the configuration file the tests start from: the control
// socket and two services, no lagg.
func ifcServices(sock string) string {
	return fmt.Sprintf(`[control]
socket = %q

[[service]]
kind = "tcp-echo"
port = %d

[[service]]
kind = "tcp-discard"
port = %d
`, sock, echoPort, discardPort)
}

// startIfcProc writes ifcServices to a new file and runs ulagg on it in
// tp's appliance namespace.
func startIfcProc(t *testing.T, tp *ifcTopo) *ifcProc {
	t.Helper()
	dir := t.TempDir()
	p := &ifcProc{bin: buildULagg(t), ns: tp.app, file: filepath.Join(dir, "ulagg.toml"), sock: filepath.Join(dir, "ulagg.sock")}
	if err := os.WriteFile(p.file, []byte(ifcServices(p.sock)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	return p
}

// start runs `ulagg run -c p.file` and waits for its control socket.
func (p *ifcProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", p.ns, p.bin, "run", "-c", p.file, "--log-level", "info")
	if !p.launch(t, cmd, func() bool {
		_, _, code := p.run(t, "ifconfig", "-s", p.sock, "-l")
		return code == 0
	}) {
		t.Fatalf("ulagg run: the control socket does not answer within 10s")
	}
}

// launch starts cmd, p's `ulagg run`, and reports whether ready held
// within 10 s; it fails t if ulagg exited meanwhile. Cleanup kills ulagg
// if it still runs and shows its output if the test failed.
func (p *ifcProc) launch(t *testing.T, cmd *exec.Cmd, ready func() bool) bool {
	t.Helper()
	p.cmd = cmd
	p.out = &syncBuffer{}
	p.exited = make(chan struct{})
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited, out := p.exited, p.out
	go func() {
		p.waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("ulagg run output:\n%s", ifcTail(out.String(), 16<<10))
		}
	})
	if !testkit.Poll(10*time.Second, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		return ready()
	}) {
		return false
	}
	select {
	case <-exited:
		t.Fatalf("ulagg run exited at start: %v", p.waitErr)
	default:
	}
	return true
}

// stop sends SIGTERM and checks that ulagg exits 0 within 20 s, having
// logged that it stopped, and removed its socket.
func (p *ifcProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("ulagg run did not exit within 20s of SIGTERM")
	}
	var ee *exec.ExitError
	switch {
	case p.waitErr == nil:
	case errors.As(p.waitErr, &ee):
		t.Errorf("ulagg run exited with %d after SIGTERM, want 0", ee.ExitCode())
	default:
		t.Error(p.waitErr)
	}
	if !bytes.Contains(p.out.Bytes(), []byte(`msg=stopped`)) {
		t.Errorf("ulagg run did not log that it stopped")
	}
	if _, err := os.Stat(p.sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket %s still there after the exit (stat: %v)", p.sock, err)
	}
}

// run runs the ulagg binary (here, in the test's own namespace: the control
// socket is a file) and returns its output and exit code.
func (p *ifcProc) run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return p.runEnv(t, nil, args...)
}

func (p *ifcProc) runEnv(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, args...)
	// The socket comes from -s, or from env when a test says so.
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "ULAGG_SOCKET=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() > 0:
		code = ee.ExitCode()
	default:
		t.Fatalf("ulagg %s: %v\n%s", strings.Join(args, " "), err, e.String())
	}
	return o.String(), e.String(), code
}

// ifconfig runs `ulagg ifconfig -s SOCK LINE...`: the words of LINE, split
// on blanks as a shell would, are the arguments.
func (p *ifcProc) ifconfig(t *testing.T, line ...string) (stdout, stderr string, code int) {
	t.Helper()
	return p.run(t, append([]string{"ifconfig", "-s", p.sock}, strings.Fields(strings.Join(line, " "))...)...)
}

// mustIfconfig runs each line and fails the test unless it exits 0 with no
// output.
func (p *ifcProc) mustIfconfig(t *testing.T, lines ...string) {
	t.Helper()
	for _, line := range lines {
		out, errOut, code := p.ifconfig(t, line)
		if code != 0 || out != "" || errOut != "" {
			t.Fatalf("ulagg ifconfig %s: exit %d, stdout %q, stderr %q", line, code, out, errOut)
		}
	}
}

// status returns `ulagg ifconfig -s SOCK [FLAGS] lagg0`.
func (p *ifcProc) status(t *testing.T, flags ...string) string {
	t.Helper()
	args := append([]string{"ifconfig", "-s", p.sock}, flags...)
	out, errOut, code := p.run(t, append(args, "lagg0")...)
	if code != 0 || errOut != "" {
		t.Fatalf("ulagg %s lagg0: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

// waitStatus polls the status until its first line is flags, and returns it.
func (p *ifcProc) waitStatus(t *testing.T, timeout time.Duration, flags string) string {
	t.Helper()
	var out string
	if !testkit.Poll(timeout, func() bool {
		out = p.status(t)
		return strings.SplitN(out, "\n", 2)[0] == flags
	}) {
		t.Fatalf("status not %q within %v:\n%s", flags, timeout, out)
	}
	return out
}

// Flags lines of `ifconfig lagg0` (format.go's IfFlags).
const (
	ifcRunning   = "lagg0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu "
	ifcNoCarrier = "lagg0: flags=0x8803<UP,BROADCAST,SIMPLEX,MULTICAST> mtu "
)

// ifcGlob reports whether s matches pattern, in which each * stands for any
// run of characters and every other character for itself.
func ifcGlob(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return s == pattern
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, mid := range parts[1 : len(parts)-1] {
		i := strings.Index(s, mid)
		if i < 0 {
			return false
		}
		s = s[i+len(mid):]
	}
	last := parts[len(parts)-1]
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}

// ifcCheckLines compares output with want line by line (ifcGlob patterns)
// and reports every difference.
func ifcCheckLines(t *testing.T, what, got string, want []string) bool {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	ok := true
	for i := 0; i < max(len(lines), len(want)); i++ {
		var g, w string
		if i < len(lines) {
			g = lines[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if i >= len(lines) || i >= len(want) || !ifcGlob(w, g) {
			t.Errorf("%s, line %d: got %q, want %q", what, i+1, g, w)
			ok = false
		}
	}
	if !ok {
		t.Logf("%s, whole output:\n%s", what, got)
	}
	return ok
}

// ifcWithoutDrops leaves out the "drops:" lines of verbose status, which
// depend on timing (frames sent before the link was up).
func ifcWithoutDrops(s string) string {
	var keep []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(strings.TrimLeft(l, "\t"), "drops: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// ifcPingOK pings the lagg from the kernel host; most replies must come.
func ifcPingOK(t *testing.T, tp *ifcTopo, count int) {
	t.Helper()
	r, err := lab.Ping(tp.host, ifcLaggAddr, count, 20*time.Millisecond, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.Received < count-1 {
		t.Fatalf("ping %s from the kernel host: %d of %d replies", ifcLaggIP, r.Received, r.Sent)
	}
}

// ifcEchoOK sends n bytes to the lagg's tcp-echo service from the kernel
// host and checks they come back unchanged.
func ifcEchoOK(t *testing.T, tp *ifcTopo, n int) {
	t.Helper()
	testkit.CheckEcho(t, kernelDialer(tp.host, net.JoinHostPort(ifcLaggIP, strconv.Itoa(echoPort))), testkit.Bytes(uint64(n), n))
}

// ifcDiscardOK sends n bytes to the tcp-discard service: it takes them all,
// sends nothing back and closes when the host half-closes.
func ifcDiscardOK(t *testing.T, tp *ifcTopo, n int) {
	t.Helper()
	c, err := lab.Dial(tp.host, "tcp4", net.JoinHostPort(ifcLaggIP, strconv.Itoa(discardPort)))
	if err != nil {
		t.Fatalf("dial tcp-discard: %v", err)
	}
	defer c.Close()
	if err := testkit.SendStream(c, 9, int64(n)); err != nil {
		t.Fatalf("tcp-discard: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
	b, err := io.ReadAll(c)
	if err != nil || len(b) != 0 {
		t.Fatalf("tcp-discard: read %d bytes back, err %v; want a clean close and nothing", len(b), err)
	}
}

// ifcStream is a verified TCP stream from the kernel host through the
// lagg's tcp-echo service and back (testkit.StartEcho), paced (128 KiB
// every 5 ms at most: ~25 MB/s, plenty to see a change, little load on 2
// cores) so that it runs for as long as a test changes the lagg under it.
type ifcStream struct{ *testkit.Transfer }

func ifcStartStream(t *testing.T, tp *ifcTopo, seed uint64) *ifcStream {
	t.Helper()
	c, err := lab.Dial(tp.host, "tcp4", net.JoinHostPort(ifcLaggIP, strconv.Itoa(echoPort)))
	if err != nil {
		t.Fatalf("dial tcp-echo: %v", err)
	}
	return &ifcStream{testkit.StartEcho(t, c, testkit.TransferOptions{
		Name: "stream through tcp-echo", Seed: seed, Size: -1, Chunk: 128 << 10, Pace: 5 * time.Millisecond,
	})}
}

// progress waits until n more bytes came back intact; what is the step
// the test just took.
func (s *ifcStream) progress(t *testing.T, n int64, what string) {
	t.Helper()
	if err := s.Await(s.Received()+n, 20*time.Second); err != nil {
		t.Fatalf("%s: the stream did not move %d more bytes: %v", what, n, err)
	}
}

// finish half-closes the stream and checks that every byte sent came back
// intact, with no reset or error on either side.
func (s *ifcStream) finish(t *testing.T) int64 {
	t.Helper()
	return s.Wait(t, 30*time.Second).Received
}

// ifcTail is the end of s, at most n bytes.
func ifcTail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
