package appliance_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
)

// world is what the appliance of a reconcile test sees of its interfaces:
// the rig's wires, any of which may be missing (opening it fails as a
// missing host interface does), vanish under a running lagg (its port
// reports linkep.Gone, as for `ip link del`) and appear again; ports that
// cannot take an MTU above a cap; and opens that block until released.
type world struct {
	r *ctlRig

	opens atomic.Int64

	mu sync.Mutex
	// absent names interfaces that do not exist.
	// +checklocks:mu
	absent map[string]bool
	// live is the port last opened for each name.
	// +checklocks:mu
	live map[string]*worldPort
	// mtuCap caps the MTU a port takes (0: none).
	// +checklocks:mu
	mtuCap map[string]uint32
	// block makes the open of a name wait: it sends on entered, then
	// waits for release.
	// +checklocks:mu
	block map[string]*blocker
	// watchers are the appliance's PortWatcher callbacks, by name.
	// +checklocks:mu
	watchers map[string]map[int]func()
	// +checklocks:mu
	nextW int
	// mtuSets counts SetPortMTU calls per name: what touched a port.
	// +checklocks:mu
	mtuSets map[string]int
}

type blocker struct {
	entered chan struct{}
	release chan struct{}
}

// worldPort is a port the world handed out.
type worldPort struct {
	linkep.Port
	name string
	w    *world
	mu   sync.Mutex
	// +checklocks:mu
	handler func(linkep.Event)
}

func (p *worldPort) SetEventHandler(fn func(linkep.Event)) {
	p.mu.Lock()
	p.handler = fn
	p.mu.Unlock()
	p.Port.SetEventHandler(fn)
}

func (p *worldPort) SetPortMTU(mtu uint32) error {
	p.w.mu.Lock()
	limit := p.w.mtuCap[p.name]
	p.w.mtuSets[p.name]++
	p.w.mu.Unlock()
	if limit != 0 && mtu > limit {
		return fmt.Errorf("%s takes at most MTU %d", p.name, limit)
	}
	return p.Port.SetPortMTU(mtu)
}

// gone reports what a deleted interface reports.
func (p *worldPort) gone() {
	p.mu.Lock()
	h := p.handler
	p.mu.Unlock()
	if h != nil {
		h(linkep.Event{Kind: linkep.LinkChanged, Up: false})
		h(linkep.Event{Kind: linkep.Gone})
	}
}

// errNoLink is what opening a missing host interface returns (a
// netlink.LinkNotFoundError, which only the library makes).
func errNoLink(name string) error {
	notFoundOnce.Do(func() {
		_, notFound = netlink.LinkByName("ulaggnosuch0")
	})
	return fmt.Errorf("afpacket %s: %w", name, notFound)
}

var (
	notFoundOnce sync.Once
	notFound     error
)

func newWorld(r *ctlRig) *world {
	return &world{
		r: r, absent: map[string]bool{}, live: map[string]*worldPort{}, mtuCap: map[string]uint32{},
		block: map[string]*blocker{}, watchers: map[string]map[int]func(){}, mtuSets: map[string]int{},
	}
}

// open is the appliance's PortOpener.
func (w *world) open(p config.Port, log *slog.Logger) (linkep.Port, error) {
	w.opens.Add(1)
	w.mu.Lock()
	b := w.block[p.Name]
	w.mu.Unlock()
	if b != nil {
		b.entered <- struct{}{}
		<-b.release
	}
	w.mu.Lock()
	absent := w.absent[p.Name] || w.r.wires[p.Name] == nil
	w.mu.Unlock()
	if absent {
		return nil, errNoLink(p.Name)
	}
	child, err := w.r.open(p, log)
	if err != nil {
		return nil, err
	}
	wp := &worldPort{Port: child, name: p.Name, w: w}
	w.mu.Lock()
	w.live[p.Name] = wp
	w.mu.Unlock()
	return wp, nil
}

// watch is the appliance's PortWatcher.
func (w *world) watch(p config.Port, appeared func()) (func(), error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watchers[p.Name] == nil {
		w.watchers[p.Name] = map[int]func(){}
	}
	id := w.nextW
	w.nextW++
	w.watchers[p.Name][id] = appeared
	if !w.absent[p.Name] && w.r.wires[p.Name] != nil {
		go appeared()
	}
	return func() {
		w.mu.Lock()
		delete(w.watchers[p.Name], id)
		w.mu.Unlock()
	}, nil
}

// watching reports how many watchers wait for name.
func (w *world) watching(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.watchers[name])
}

// vanish deletes name's interface: a port open on it reports Gone.
func (w *world) vanish(name string) {
	w.mu.Lock()
	w.absent[name] = true
	p := w.live[name]
	w.mu.Unlock()
	if p != nil {
		p.gone()
	}
}

// appear creates name's interface and tells the watchers.
func (w *world) appear(name string) {
	w.mu.Lock()
	w.absent[name] = false
	var fns []func()
	for _, fn := range w.watchers[name] {
		fns = append(fns, fn)
	}
	w.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// mtuTouches returns how often name's MTU was set.
func (w *world) mtuTouches(name string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mtuSets[name]
}

func (w *world) capMTU(name string, mtu uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mtuCap[name] = mtu
}

func (w *world) setAbsent(names ...string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range names {
		w.absent[n] = true
	}
}

// reconRig is a ctlRig whose appliance opens ports through a world.
type reconRig struct {
	*ctlRig
	w      *world
	logBuf *testkit.SyncBuffer
}

type reconOptions struct {
	// noWatcher leaves the appliance's default watcher (none for wire
	// ports: retry with backoff).
	noWatcher bool
	strict    bool
	// absent names interfaces missing at the start.
	absent []string
	// file is where the configuration is written (default: the rig's).
	file string
	// newErr, if set, receives New's error, and the rig stops there.
	newErr *error
	// symlink writes the file in a directory of its own and gives the
	// appliance a symbolic link to it.
	symlink bool
}

// newReconRig is newCtlRig with the appliance opening ports through a
// world, and its log kept.
func newReconRig(t *testing.T, toml, peerProto string, o reconOptions, ports ...string) *reconRig {
	t.Helper()
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
	if o.file != "" {
		r.file = o.file
	}
	rr := &reconRig{ctlRig: r, w: newWorld(r), logBuf: &testkit.SyncBuffer{}}
	var sink io.Writer = rr.logBuf
	if testing.Verbose() && os.Getenv("ULAGG_TEST_LOG") != "" {
		sink = io.MultiWriter(rr.logBuf, os.Stderr)
	}
	log := slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
	po := lagg.DefaultOptions(fmt.Sprintf("peer%d", ctlSeq))
	po.Proto, po.Logger = lagg.Proto(peerProto), ctlQuiet
	po.MAC = tcpip.LinkAddress([]byte{2, 0, 0, 2, byte(ctlSeq), 0xff})
	pl, err := lagg.New(po)
	if err != nil {
		t.Fatal(err)
	}
	r.pl = pl
	for i, name := range ports {
		r.wires[name] = linkeptest.NewWire(name, fmt.Sprintf("p%d.%s", ctlSeq, name),
			tcpip.LinkAddress([]byte{2, 0, 0, 1, byte(ctlSeq), byte(i)}),
			tcpip.LinkAddress([]byte{2, 0, 0, 2, byte(ctlSeq), byte(i)}),
			linkeptest.WireOptions{SpeedMbps: 1000, Logger: ctlQuiet})
	}
	if r.peer, err = ustack.NewNetstack(); err != nil {
		t.Fatal(err)
	}
	if err := ustack.AddInterface(r.peer, 1, po.Name, pl, []netip.Prefix{netip.MustParsePrefix(peerAddr + "/24")}); err != nil {
		t.Fatal(err)
	}
	pl.SetAnnouncer(func() { _ = ustack.Announce(r.peer, 1) })
	if !strings.Contains(toml, "[[service]]") {
		toml += "\n[[service]]\nkind = \"tcp-echo\"\nport = 7\n\n[[service]]\nkind = \"tcp-discard\"\nport = 9\n"
	}
	if o.symlink {
		real := filepath.Join(dir, "real", "ulagg.toml")
		if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join("real", "ulagg.toml"), r.file); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(r.file, []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(r.file)
	if err != nil {
		t.Fatal(err)
	}
	rr.w.setAbsent(o.absent...)
	opts := appliance.Options{Logger: log, OpenPort: rr.w.open, Strict: o.strict}
	if !o.noWatcher {
		opts.WatchPort = rr.w.watch
	}
	t.Cleanup(func() {
		if r.srv != nil {
			if err := r.srv.Close(); err != nil {
				t.Errorf("control server Close: %v", err)
			}
		}
		if r.a != nil {
			r.a.Close()
		}
		r.peer.Close()
		r.peer.Wait()
		pl.Close()
		if t.Failed() {
			t.Logf("appliance log:\n%s", rr.logBuf.String())
		}
	})
	r.a, err = appliance.New(cfg, opts)
	if o.newErr != nil {
		*o.newErr = err
		if err != nil {
			r.a = nil
			return rr
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	r.srv, err = appliance.ListenControl(r.a, appliance.ControlOptions{
		Path:       r.sock,
		ConfigFile: r.file,
		KindOf:     func(string) string { return "wire" },
		Logger:     log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return rr
}

// call sends a control request and returns its output.
func (r *reconRig) call(req appliance.ControlRequest) (string, error) {
	resp, err := appliance.ControlCall(r.sock, req)
	if err != nil {
		return "", err
	}
	return resp.Output, nil
}

// ports returns lagg name's ports in priority order.
func (r *reconRig) ports(name string) []string {
	l := r.a.Lagg(name)
	if l == nil {
		return nil
	}
	return l.Ports()
}

// waitPorts waits until lagg name's ports, sorted, are want.
func (r *reconRig) waitPorts(name string, timeout time.Duration, want ...string) {
	r.t.Helper()
	slices.Sort(want)
	testkit.WaitFor(r.t, timeout, fmt.Sprintf("%s ports %v", name, want), func() bool {
		got := r.ports(name)
		slices.Sort(got)
		return slices.Equal(got, want)
	})
}

// failoverTOML is failoverRig's configuration: lagg0 over wm0 (1000) and
// wm1 (2000), a fixed MAC.
const failoverTOML = `
[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["192.168.1.1/24"]
mac = "02:00:00:00:0a:01"
` + wmPortsTOML

// wmPortsTOML is the ports of the rigs' failover lagg0, to follow its
// [[lagg]] keys: wm0 (priority 1000, active) and wm1 (2000).
const wmPortsTOML = `[[lagg.port]]
name = "wm0"
kind = "wire"
priority = 1000
[[lagg.port]]
name = "wm1"
kind = "wire"
priority = 2000
`
