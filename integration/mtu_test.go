package integration

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

const jumboMTU = 9000

// TestMTU: a lagg with mtu = 9000 puts 9000 on every port's host interface
// (and TCP from the host gets a jumbo MSS); a port's MTU changed behind the
// lagg's back (`ip link set dev X mtu 1500`) is put back to 9000; when the
// appliance stops, every port interface has its original MTU, MAC, admin
// state (a port that was down is down again) and promiscuity. Both with the
// appliance in this process and with the ulagg binary stopped by SIGTERM,
// which must exit 0.
func TestMTU(t *testing.T) {
	t.Run("in_process", func(t *testing.T) {
		tp, orig := newJumboTopo(t)
		lc := laggConfig(config.ProtoFailover, tp.ports...)
		lc.MTU = jumboMTU
		ap := startAppliance(t, lc, appOptions{netns: tp.lag})
		checkJumbo(t, tp)
		if st := ap.l.Status(); st.MTU != jumboMTU {
			t.Errorf("lagg MTU %d, want %d", st.MTU, jumboMTU)
		}
		if n := ap.log.count("restoring it"); n < len(tp.ports) {
			t.Errorf("the appliance logged %d MTU restorations, want %d", n, len(tp.ports))
		}
		ap.a.Close()
		checkRestored(t, tp, orig)
	})
	t.Run("binary", func(t *testing.T) {
		tp, orig := newJumboTopo(t)
		bin := buildULagg(t)
		dir := t.TempDir()
		cfgFile := filepath.Join(dir, "ulagg.toml")
		cfg := fmt.Sprintf(`[control]
socket = %q

[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["%s/24"]
mtu = %d

[[lagg.port]]
name = %q
priority = 1000

[[lagg.port]]
name = %q
priority = 2000

[[service]]
kind = "tcp-echo"
port = %d
`, filepath.Join(dir, "ulagg.sock"), laggIP, jumboMTU, tp.ports[0], tp.ports[1], echoPort)
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := config.Load(cfgFile); err != nil {
			t.Fatalf("the test's configuration does not load: %v", err)
		}
		var out syncBuffer
		cmd := exec.Command("ip", "netns", "exec", tp.lag, bin, "run", "-c", cfgFile, "--log-level", "info")
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		var waitErr error
		exited := make(chan struct{})
		go func() {
			waitErr = cmd.Wait()
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
				t.Logf("ulagg output:\n%s", out.String())
			}
		})
		if !testkit.Poll(15*time.Second, func() bool {
			r, err := lab.Ping(tp.host, laggAddr, 1, 0, 200*time.Millisecond)
			return err == nil && r.Received == 1
		}) {
			t.Fatal("ulagg run: the lagg address does not answer ping within 15s")
		}
		checkJumbo(t, tp)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-exited:
			var ee *exec.ExitError
			switch {
			case waitErr == nil:
			case errors.As(waitErr, &ee):
				t.Errorf("ulagg run exited with %d after SIGTERM, want 0", ee.ExitCode())
			default:
				t.Error(waitErr)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("ulagg run did not exit within 20s of SIGTERM")
		}
		if !bytes.Contains(out.Bytes(), []byte("stopped")) {
			t.Errorf("ulagg run did not log that it stopped")
		}
		checkRestored(t, tp, orig)
	})
}

// newJumboTopo is a 2-port topology whose host side takes jumbo frames and
// whose second port is admin down; it returns the ports' original state.
func newJumboTopo(t *testing.T) (*topo, []lab.LinkInfo) {
	tp := newTopo(t, 2)
	for _, h := range tp.peers {
		setLink(t, tp.host, h, "mtu", strconv.Itoa(jumboMTU))
	}
	setLink(t, tp.host, tp.bridge, "mtu", strconv.Itoa(jumboMTU))
	setLink(t, tp.lag, tp.ports[1], "down")
	var orig []lab.LinkInfo
	for _, p := range tp.ports {
		orig = append(orig, mustLink(t, tp.lag, p))
	}
	if orig[0].MTU == jumboMTU || orig[1].AdminUp {
		t.Fatalf("unexpected starting state: %+v", orig)
	}
	return tp, orig
}

// checkJumbo checks that the lagg's MTU is on every port, that TCP from the
// host negotiates a jumbo MSS and echoes intact, and that a port whose MTU
// is changed behind the lagg's back gets it back.
func checkJumbo(t *testing.T, tp *topo) {
	t.Helper()
	testkit.WaitFor(t, 5*time.Second, "MTU 9000 and admin up on every port", func() bool {
		for _, p := range tp.ports {
			li, err := lab.Link(tp.lag, p)
			if err != nil || li.MTU != jumboMTU || !li.AdminUp {
				return false
			}
		}
		return true
	})
	c, err := lab.Dial(tp.host, "tcp4", net.JoinHostPort(laggIP, strconv.Itoa(echoPort)))
	if err != nil {
		t.Fatal(err)
	}
	mss := tcpMaxSeg(t, c)
	c.Close()
	if mss < 8000 {
		t.Errorf("the host's TCP MSS towards the lagg is %d, want a jumbo one (> 8000)", mss)
	}
	echoOK(t, tp.host, 1<<20)

	for _, p := range tp.ports {
		setLink(t, tp.lag, p, "mtu", "1500")
		start := time.Now()
		testkit.WaitFor(t, 5*time.Second, p+" MTU put back to 9000", func() bool {
			li, err := lab.Link(tp.lag, p)
			return err == nil && li.MTU == jumboMTU
		})
		t.Logf("measure: mtu %s changed to 1500 behind the lagg: back to %d after %v; host TCP MSS %d",
			p, jumboMTU, time.Since(start).Round(time.Millisecond), mss)
	}
	pingOK(t, tp.host, 3)
}

// checkRestored compares the ports' interfaces with their original state.
func checkRestored(t *testing.T, tp *topo, orig []lab.LinkInfo) {
	t.Helper()
	for i, p := range tp.ports {
		var got lab.LinkInfo
		if !testkit.Poll(3*time.Second, func() bool {
			var err error
			got, err = lab.Link(tp.lag, p)
			return err == nil && got.MTU == orig[i].MTU && got.MAC == orig[i].MAC &&
				got.AdminUp == orig[i].AdminUp && got.Promiscuity == orig[i].Promiscuity
		}) {
			t.Errorf("%s after the appliance stopped: mtu %d mac %s admin-up %v promiscuity %d; want mtu %d mac %s admin-up %v promiscuity %d",
				p, got.MTU, got.MAC, got.AdminUp, got.Promiscuity, orig[i].MTU, orig[i].MAC, orig[i].AdminUp, orig[i].Promiscuity)
		}
	}
}

func tcpMaxSeg(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var mss int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		mss, serr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_MAXSEG)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return mss
}

var ulaggBin struct {
	once sync.Once
	path string
	dir  string
	err  error
}

// buildULagg builds cmd/ulagg once per run into a temporary directory
// (removed by TestMain's cleanup hook).
func buildULagg(t *testing.T) string {
	t.Helper()
	ulaggBin.once.Do(func() {
		// `go test` puts its own GOROOT/bin first on the test's PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			ulaggBin.err = fmt.Errorf("the go command: %v", err)
			return
		}
		ulaggBin.dir, ulaggBin.err = os.MkdirTemp("", testPrefix+"-bin")
		if ulaggBin.err != nil {
			return
		}
		ulaggBin.path = filepath.Join(ulaggBin.dir, "ulagg")
		cmd := exec.Command(goTool, "build", "-o", ulaggBin.path, "github.com/ulagg/ulagg/cmd/ulagg")
		if out, err := cmd.CombinedOutput(); err != nil {
			ulaggBin.err = fmt.Errorf("go build ./cmd/ulagg: %v\n%s", err, out)
		}
	})
	if ulaggBin.err != nil {
		t.Fatal(ulaggBin.err)
	}
	return ulaggBin.path
}

// removeBuilt deletes what buildULagg made.
func removeBuilt() {
	if ulaggBin.dir != "" {
		os.RemoveAll(ulaggBin.dir)
	}
}

// syncBuffer takes a child's stdout and stderr.
type syncBuffer = testkit.SyncBuffer
