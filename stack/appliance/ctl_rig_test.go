package appliance_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
)

// ctlRig is an appliance whose ports are in-memory wires, served on a
// control socket in a temporary directory, and a peer: a gVisor stack with
// a lagg over the far ends of the same wires. Port names (wm0, wm1, ...)
// are registered process-wide by the lagg package, so tests using a rig do
// not run in parallel.
type ctlRig struct {
	t     *testing.T
	a     *appliance.Appliance
	srv   *appliance.ControlServer
	sock  string
	file  string
	peer  *gstack.Stack
	pl    *lagg.Lagg
	wires map[string]*linkeptest.Wire
	log   *slog.Logger
}

var ctlQuiet = slog.New(slog.DiscardHandler)

// ctlSeq makes the peer's names unique within the process.
var ctlSeq int

// Addresses of the appliance's lagg0 (as the man page) and of the peer.
const (
	ctlAddr  = "192.168.1.1"
	peerAddr = "192.168.1.2"
)

// newCtlRig starts an appliance from toml (written to the rig's config
// file), its control socket, and a peer lagg running peerProto over one
// wire per name in ports. Services tcp-echo 7 and tcp-discard 9 are added
// to toml if it has none.
func newCtlRig(t *testing.T, toml, peerProto string, ports ...string) *ctlRig {
	t.Helper()
	// Registered first, so they check after every other cleanup: the rig's
	// own (control server, appliance, peer) and the test's.
	testkit.CheckGoroutines(t)
	testkit.CheckFDs(t)
	ctlSeq++
	dir := t.TempDir()
	r := &ctlRig{
		t:     t,
		sock:  filepath.Join(dir, "run", "ulagg.sock"),
		file:  filepath.Join(dir, "ulagg.toml"),
		wires: map[string]*linkeptest.Wire{},
		log:   ctlQuiet,
	}
	if testing.Verbose() && os.Getenv("ULAGG_TEST_LOG") != "" {
		r.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	po := lagg.DefaultOptions(fmt.Sprintf("peer%d", ctlSeq))
	po.Proto, po.Logger = lagg.Proto(peerProto), r.log
	// A fixed MAC: the peer's ports come and go with the appliance's.
	po.MAC = tcpip.LinkAddress([]byte{2, 0, 0, 2, byte(ctlSeq), 0xff})
	pl, err := lagg.New(po)
	if err != nil {
		t.Fatal(err)
	}
	r.pl = pl
	for i, name := range ports {
		w := linkeptest.NewWire(name, fmt.Sprintf("p%d.%s", ctlSeq, name),
			tcpip.LinkAddress([]byte{2, 0, 0, 1, byte(ctlSeq), byte(i)}),
			tcpip.LinkAddress([]byte{2, 0, 0, 2, byte(ctlSeq), byte(i)}),
			linkeptest.WireOptions{SpeedMbps: 1000, Logger: r.log})
		r.wires[name] = w
	}
	r.peer, err = ustack.NewNetstack()
	if err != nil {
		pl.Close()
		t.Fatal(err)
	}
	if err := ustack.AddInterface(r.peer, 1, po.Name, pl, []netip.Prefix{netip.MustParsePrefix(peerAddr + "/24")}); err != nil {
		t.Fatal(err)
	}
	pl.SetAnnouncer(func() { _ = ustack.Announce(r.peer, 1) })
	if !strings.Contains(toml, "[[service]]") {
		toml += "\n[[service]]\nkind = \"tcp-echo\"\nport = 7\n\n[[service]]\nkind = \"tcp-discard\"\nport = 9\n"
	}
	if err := os.WriteFile(r.file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(r.file)
	if err != nil {
		t.Fatal(err)
	}
	r.a, err = appliance.New(cfg, appliance.Options{Logger: r.log, OpenPort: r.open})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.a.ApplyAdmin(cfg); err != nil {
		t.Fatal(err)
	}
	r.srv, err = appliance.ListenControl(r.a, appliance.ControlOptions{
		Path:       r.sock,
		ConfigFile: r.file,
		KindOf:     func(string) string { return "wire" },
		Logger:     r.log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.srv.Close(); err != nil {
			t.Errorf("control server Close: %v", err)
		}
		if _, err := os.Stat(r.sock); !os.IsNotExist(err) {
			t.Errorf("socket %s still there after Close (stat: %v)", r.sock, err)
		}
		r.a.Close()
		r.peer.Close()
		r.peer.Wait()
		pl.Close()
	})
	return r
}

// rigPort is a wire end handed to the appliance. Closing it (the appliance
// removed the port) also takes the far end out of the peer's lagg, as an
// operator would on the switch, so the peer stops sending into it.
type rigPort struct {
	*linkeptest.WireEnd
	r    *ctlRig
	peer string
}

func (p *rigPort) Close() {
	p.WireEnd.Close()
	_ = p.r.pl.RemovePort(p.peer)
}

// open is the appliance's PortOpener: a wire end by name. A port removed
// earlier reuses its end, and its far end joins the peer's lagg again.
func (r *ctlRig) open(p config.Port, _ *slog.Logger) (linkep.Port, error) {
	w := r.wires[p.Name]
	if w == nil || p.Kind != "wire" {
		return nil, fmt.Errorf("open %s: no such interface", p.Name)
	}
	if !contains(r.pl.Ports(), w.B.Name()) {
		if err := r.pl.AddPort(w.B, lagg.DefaultPriority); err != nil {
			return nil, err
		}
	}
	return &rigPort{WireEnd: w.A, r: r, peer: w.B.Name()}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// ifconfig runs `ulagg ifconfig LINE` through the control socket.
func (r *ctlRig) ifconfig(line string) error {
	_, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdIfconfig, Args: strings.Fields(line)})
	return err
}

func (r *ctlRig) mustIfconfig(lines ...string) {
	r.t.Helper()
	for _, line := range lines {
		if err := r.ifconfig(line); err != nil {
			r.t.Fatalf("ulagg ifconfig %s: %v", line, err)
		}
	}
}

// status returns `ulagg ifconfig [-v] LAGG` through the socket.
func (r *ctlRig) status(name string, verbose bool) string {
	r.t.Helper()
	resp, err := appliance.ControlCall(r.sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Lagg: name, Verbose: verbose})
	if err != nil {
		r.t.Fatalf("status %s: %v", name, err)
	}
	return resp.Output
}

// waitRunning waits until lagg name's link is up.
func (r *ctlRig) waitRunning(name string, timeout time.Duration) {
	r.t.Helper()
	testkit.WaitFor(r.t, timeout, name+" RUNNING", func() bool {
		l := r.a.Lagg(name)
		return l != nil && l.Status().Up
	})
}

// checkLines compares output with want line by line; "*" in a wanted line
// matches any rest of the line.
func checkLines(t *testing.T, got string, want []string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	for i := 0; i < max(len(lines), len(want)); i++ {
		var g, w string
		if i < len(lines) {
			g = lines[i]
		}
		if i < len(want) {
			w = want[i]
		}
		ok := g == w
		if p, wild := strings.CutSuffix(w, "*"); wild {
			ok = strings.HasPrefix(g, p) && i < len(lines)
		}
		if !ok {
			t.Errorf("line %d: got %q, want %q\nwhole output:\n%s", i+1, g, w, got)
		}
	}
}

// startTransfer streams data from the peer to the appliance's tcp-echo
// service, paced (8 KiB a millisecond at most) so that it runs while a
// test changes the lagg, and checks that every byte comes back, in order,
// with no reset (testkit.StartEcho). WaitMore waits for progress; Wait
// stops it and checks the end.
func (r *ctlRig) startTransfer() *testkit.Transfer {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	to := netip.AddrPortFrom(netip.MustParseAddr(ctlAddr), 7)
	c, err := testkit.GonetDialer(r.peer, to)(ctx)
	if err != nil {
		r.t.Fatalf("dial %v from the peer: %v", to, err)
	}
	return testkit.StartEcho(r.t, c, testkit.TransferOptions{
		Name:  "stream through " + ctlAddr + ":7",
		Seed:  uint64(ctlSeq),
		Size:  -1,
		Chunk: 8 << 10,
		Pace:  time.Millisecond,
	})
}
