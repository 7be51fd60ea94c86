package integration

// The ulagg binary killed with SIGKILL, and what it left on the host
// interfaces put back by the next start (crash-safe host state: state files
// under [control] runtime_dir). Helpers here start with cr; owner_test.go and
// signal_test.go use them too.

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// crProc is one `ulagg run` inside a namespace.
type crProc struct {
	cmd     *exec.Cmd
	out     *syncBuffer
	exited  chan struct{}
	waitErr error
}

// crConfig is a failover lagg0 over ports with the given MTU (0: none) and
// a tcp-echo service, its control socket and state files in dir.
func crConfig(dir string, mtu int, ports ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[control]\nsocket = %q\nruntime_dir = %q\n\n[[lagg]]\nname = \"lagg0\"\nproto = \"failover\"\naddresses = [\"%s/24\"]\n",
		filepath.Join(dir, "ulagg.sock"), filepath.Join(dir, "run"), laggIP)
	if mtu != 0 {
		fmt.Fprintf(&b, "mtu = %d\n", mtu)
	}
	for i, p := range ports {
		fmt.Fprintf(&b, "\n[[lagg.port]]\nname = %q\npriority = %d\n", p, 1000*(i+1))
	}
	fmt.Fprintf(&b, "\n[[service]]\nkind = \"tcp-echo\"\nport = %d\n", echoPort)
	return b.String()
}

// crWrite writes cfg(dir), dir a new directory, to dir/ulagg.toml.
func crWrite(t *testing.T, cfg func(dir string) string) (dir, file string) {
	t.Helper()
	dir = t.TempDir()
	file = filepath.Join(dir, "ulagg.toml")
	if err := os.WriteFile(file, []byte(cfg(dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, file
}

// crStart runs `ulagg run -c file` in namespace ns; the process is killed
// when the test ends if it still runs.
func crStart(t *testing.T, ns, file string, args ...string) *crProc {
	t.Helper()
	p := &crProc{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, buildULagg(t), "run", "-c", file, "--log-level", "info"}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("ulagg run (pid %d) output:\n%s", p.cmd.Process.Pid, ifcTail(p.out.String(), 16<<10))
		}
	})
	return p
}

func (p *crProc) pid() int { return p.cmd.Process.Pid }

// running reports whether the process still runs.
func (p *crProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// waitExit waits up to d for the process to exit and returns its exit
// code (-1 for a signal).
func (p *crProc) waitExit(t *testing.T, d time.Duration) (code int, ok bool) {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		return 0, false
	}
	var ee *exec.ExitError
	switch {
	case p.waitErr == nil:
		return 0, true
	case errors.As(p.waitErr, &ee):
		return ee.ExitCode(), true
	}
	t.Fatal(p.waitErr)
	return 0, false
}

// term sends SIGTERM and returns how long the exit took; the exit must be
// 0 and within limit.
func (p *crProc) term(t *testing.T, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, ok := p.waitExit(t, 20*time.Second)
	took := time.Since(start)
	switch {
	case !ok:
		t.Fatalf("ulagg run did not exit within 20s of SIGTERM")
	case took > limit:
		t.Errorf("ulagg run exited %v after SIGTERM, want within %v", took.Round(time.Millisecond), limit)
	case code != 0:
		t.Errorf("ulagg run exited with %d after SIGTERM, want 0", code)
	}
	return took
}

// crWaitPorts waits until every port has MTU mtu and is admin up.
func crWaitPorts(t *testing.T, tp *topo, mtu int) {
	t.Helper()
	testkit.WaitFor(t, 15*time.Second, fmt.Sprintf("MTU %d and admin up on every port", mtu), func() bool {
		for _, p := range tp.ports {
			li, err := lab.Link(tp.lag, p)
			if err != nil || li.MTU != mtu || !li.AdminUp {
				return false
			}
		}
		return true
	})
}

// crWaitServing waits until the lagg answers ping from the kernel host.
func crWaitServing(t *testing.T, tp *topo, p *crProc) {
	t.Helper()
	if !testkit.Poll(15*time.Second, func() bool {
		if !p.running() {
			return true
		}
		r, err := lab.Ping(tp.host, laggAddr, 1, 0, 200*time.Millisecond)
		return err == nil && r.Received == 1
	}) {
		t.Fatal("ulagg run: the lagg address does not answer ping within 15s")
	}
	if !p.running() {
		t.Fatalf("ulagg run exited at start: %v", p.waitErr)
	}
}

// crStateFiles lists the files under the runtime directory's host/.
func crStateFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, "run", "host"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestCrashRestoresHostState: ulagg with mtu = 9000 over two veths (the
// second admin down) is killed with SIGKILL while a stream runs through it:
// the ports stay at 9000 and admin up, with a state file each. The next
// start puts them back before reading their "original" values, so that its
// clean stop (SIGTERM) leaves them as they were before any ulagg: MTU 1500,
// the second port down.
func TestCrashRestoresHostState(t *testing.T) {
	tp, orig := newJumboTopo(t)
	dir, file := crWrite(t, func(dir string) string { return crConfig(dir, jumboMTU, tp.ports...) })

	p1 := crStart(t, tp.lag, file)
	crWaitServing(t, tp, p1)
	crWaitPorts(t, tp, jumboMTU)
	if f := crStateFiles(t, dir); len(f) != len(tp.ports) {
		t.Errorf("state files while running: %v, want one per port", f)
	}
	// Mid-transfer: a verified echo stream runs when the process dies.
	c, err := lab.Dial(tp.host, "tcp4", fmt.Sprintf("%s:%d", laggIP, echoPort))
	if err != nil {
		t.Fatal(err)
	}
	stream := testkit.StartEcho(t, c, testkit.TransferOptions{Name: "echo", Seed: 6, Size: -1, Chunk: 64 << 10, Pace: 5 * time.Millisecond})
	if err := stream.Await(1<<20, 20*time.Second); err != nil {
		t.Fatalf("the stream did not move: %v", err)
	}
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := p1.waitExit(t, 10*time.Second); !ok {
		t.Fatal("ulagg did not die of SIGKILL")
	}
	c.Close()
	stream.Stop()
	for _, p := range tp.ports {
		if li := mustLink(t, tp.lag, p); li.MTU != jumboMTU || !li.AdminUp {
			t.Fatalf("%s after SIGKILL: mtu %d admin-up %v; expected what the dead process left (9000, up)", p, li.MTU, li.AdminUp)
		}
	}

	p2 := crStart(t, tp.lag, file)
	crWaitServing(t, tp, p2)
	crWaitPorts(t, tp, jumboMTU)
	echoOK(t, tp.host, 1<<20)
	if n := bytes.Count(p2.out.Bytes(), []byte("put back what a previous ulagg left")); n != len(tp.ports) {
		t.Errorf("the second start logged %d recoveries, want %d", n, len(tp.ports))
	}
	took := p2.term(t, time.Second)
	t.Logf("measure: after SIGKILL and a restart, SIGTERM exit took %v", took.Round(time.Millisecond))
	checkRestored(t, tp, orig)
	if f := crStateFiles(t, dir); len(f) != 0 {
		t.Errorf("state files left after the clean stop: %v", f)
	}
}
