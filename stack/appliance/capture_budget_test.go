package appliance_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// captureBudget is how much the process may grow (peak RSS over the RSS
// before) while 16 capture clients that never read watch a lagg carrying
// a fast stream: the captures allowed at once, each with its queue full,
// and some slack for the stream itself.
const captureBudget = 64 << 20

// TestCaptureBudget is the capture memory harness: 16 clients start a
// capture of lagg0 and never read a byte, while the peer streams through
// tcp-echo as fast as it can for 4 s. It reports the process's RSS before
// and its peak (VmHWM, reset before the attack) as a "measure:" line:
//
//	go test -count=1 -v -run TestCaptureBudget ./stack/appliance/ 2>&1 | grep measure:
//
// It checks that the growth stays within captureBudget.
func TestCaptureBudget(t *testing.T) {
	r := failoverRig(t)
	before := captureSettle(t)
	const clients = 16
	var conns []net.Conn
	for i := range clients {
		c, err := net.Dial("unix", r.sock)
		if err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		defer c.Close()
		b, _ := json.Marshal(appliance.ControlRequest{Cmd: appliance.CmdCapture, Lagg: "lagg0"})
		if _, err := c.Write(append(b, '\n')); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.GonetDialer(r.peer, netip.AddrPortFrom(netip.MustParseAddr(ctlAddr), 7))(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tr := testkit.StartEcho(t, c, testkit.TransferOptions{Name: "fast stream", Seed: 3, Size: -1, Chunk: 64 << 10})
	time.Sleep(4 * time.Second)
	res := tr.Wait(t, time.Minute)
	after := captureMem(t)
	t.Logf("measure: capture budget: %d capture clients that never read, %d MB streamed through the lagg in 4 s: RSS %d MB, peak %d MB (+%d MB)",
		clients, res.Received>>20, before.rss>>20, after.hwm>>20, (after.hwm-before.rss)>>20)
	if grow := after.hwm - before.rss; grow > captureBudget {
		t.Errorf("the process grew by %d MB, want at most %d MB", grow>>20, captureBudget>>20)
	}
	for _, c := range conns {
		c.Close()
	}
	testkit.NoGoroutines(t, 5*time.Second, "(*ControlServer).capture")
}

type captureMemSample struct{ rss, hwm int64 }

func captureMem(t *testing.T) captureMemSample {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var m captureMemSample
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.rss = kb << 10
		case "VmHWM":
			m.hwm = kb << 10
		}
	}
	return m
}

// captureSettle collects garbage, returns memory to the system and resets
// the peak RSS (VmHWM) so that what follows is measured alone.
func captureSettle(t *testing.T) captureMemSample {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("cannot reset VmHWM: %v", err)
	}
	return captureMem(t)
}
