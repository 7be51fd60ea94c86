package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	_ "github.com/ulagg/ulagg/linkep/host" // the host port kinds
	ustack "github.com/ulagg/ulagg/stack"
)

// PortOpener opens a child endpoint for a configured port. An error that
// wraps ErrPortMissing (or, for host kinds, one that host.IsMissing
// recognises) says that the port's interface does not exist now: the
// appliance keeps such a port configured, shows it as missing, and attaches
// it when it appears (see PortWatcher).
type PortOpener func(p config.Port, log *slog.Logger) (linkep.Port, error)

// PortWatcher tells the appliance when the interface of a missing port may
// have appeared: it calls appeared (from any goroutine, without blocking)
// then, and at once if the interface exists already. cancel stops it and
// must not wait for a running appeared call to return... which never
// blocks anyway.
type PortWatcher func(p config.Port, appeared func()) (cancel func(), err error)

// ErrPortMissing is the error (wrapped) of a PortOpener whose port's
// interface does not exist.
var ErrPortMissing = errors.New("no such interface")

// Options configure an Appliance.
type Options struct {
	Logger *slog.Logger
	// OpenPort opens ports; nil opens host interfaces and TAP devices with
	// linkep.Open. Tests pass one that hands out in-memory wire ends.
	OpenPort PortOpener
	// WatchPort watches for a missing port's interface; nil follows
	// rtnetlink announcements by name (host.WatchAppear) for the host kinds
	// and retries with backoff for other kinds.
	WatchPort PortWatcher
	// Strict refuses a configuration (at start and on reload) that names a
	// port whose interface is missing, instead of running without it.
	Strict bool
}

// Appliance is the running ulagg: one gVisor stack, a NIC per lagg, and the
// services. Every change goes through one reconciliation (reconcile.go),
// serialised by mu, so that startup, the control socket and a reload share
// one path; status readers read what it publishes and never wait for it.
type Appliance struct {
	log *slog.Logger
	s   *gstack.Stack
	syn *synBudget // SYN admission, shared by every lagg's NIC (synguard.go); set by New
	// routes owns the stack's route table (connected, static, DHCP
	// routes); noRoute drops the SYNs it has no route back for
	// (noroute.go). Both set by New.
	routes  *ustack.RouteTable
	noRoute *routeBack
	// captureDrops counts frames captures dropped because their client did
	// not keep up, over the appliance's life.
	captureDrops atomic.Uint64
	// cfgStats counts reloads and ifconfig changes (metrics_config.go).
	cfgStats configStats
	// +checklocks:mu
	open PortOpener
	// +checklocks:mu
	watch PortWatcher
	// +checklocks:mu
	strict bool

	// pub is what status readers see (Status, Config, Lagg, NIC),
	// published at the end of each reconciliation and when a port's
	// interface comes or goes.
	pub atomic.Pointer[published]

	// Events from the laggs and the watchers, handled on routineEvents
	// under mu (a lagg's event handler must not wait for mu: a
	// reconciliation holding mu may be closing that lagg).
	evMu sync.Mutex
	// +checklocks:evMu
	evQ    []portEvent
	evKick chan struct{}
	evStop chan struct{}
	evDone chan struct{}

	// dhcp are the running DHCP clients (dhcp.go), under their own lock.
	dhcp dhcpRuns
	// ra learns from router advertisements on the NICs in slaac, which
	// has its own lock (slaac.go). ra is set by New.
	ra    *ustack.RAWatcher
	slaac slaacNICs

	// events fans the laggs' and the appliance's events out to
	// subscribers (events.go, `ulagg monitor`).
	events eventHub

	mu sync.Mutex
	// +checklocks:mu
	cfg *config.Config // the configuration in force: what runs, and ports configured but missing
	// +checklocks:mu
	base *config.Config // the file as last loaded or saved: cfg without runtime changes
	// +checklocks:mu
	ifaces map[string]*iface
	// +checklocks:mu
	nextNIC tcpip.NICID
	// +checklocks:mu
	services *services
	// +checklocks:mu
	vlans map[string]*vlanNIC // the VLAN interfaces that run (reconcile_vlans.go)
	// pubVLANs is the running VLANs for status readers.
	pubVLANs atomic.Pointer[map[string]pubVLAN]
	// +checklocks:mu
	static []ustack.Route // the static routes given to routes (reconcile_routes.go)
	// +checklocks:mu
	closed bool
}

// iface is one lagg and its NIC. attached and missing are guarded by
// Appliance.mu.
type iface struct {
	name string
	l    *lagg.Lagg
	nic  tcpip.NICID
	// attached: the configured ports that are in the lagg, as configured.
	attached map[string]config.Port
	// missing: the configured ports whose interface does not exist, each
	// waiting for it.
	missing map[string]*missingPort
	// vlanNICs: the NICs of the VLANs on this lagg, which its announcer
	// announces too (reconcile_vlans.go).
	vlanNICs atomic.Pointer[[]tcpip.NICID]
}

// New builds the stack and applies cfg. A port whose interface is missing
// does not stop it (unless opts.Strict): the lagg runs without it, a
// warning says so, and the port is attached when its interface appears. On
// error nothing is left running.
func New(cfg *config.Config, opts Options) (*Appliance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ra := ustack.NewRAWatcher() // what router advertisements teach (slaac.go)
	s, err := ustack.NewNetstackWithNDP(ra)
	if err != nil {
		ra.Close()
		return nil, err
	}
	a := &Appliance{
		ra:      ra,
		log:     opts.Logger,
		open:    opts.OpenPort,
		watch:   opts.WatchPort,
		strict:  opts.Strict,
		s:       s,
		syn:     newSYNBudget(cfg.Limits),
		ifaces:  map[string]*iface{},
		vlans:   map[string]*vlanNIC{},
		nextNIC: 1,
		evKick:  make(chan struct{}, 1),
		evStop:  make(chan struct{}),
		evDone:  make(chan struct{}),
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.open == nil {
		a.open = OpenHostPort
	}
	a.noRoute = newRouteBack(a.log)
	a.routes = ustack.NewRouteTable(s)
	a.routes.SetOnChange(a.noRoute.publish)
	a.ra.SetOnChange(a.raChanged) // slaac.go
	if a.watch == nil {
		a.watch = watchHostPort
	}
	// Start from cfg without laggs and services: the rest (control,
	// metrics, limits) is the runtime's, not changed here.
	start := cfg.Clone()
	start.Laggs, start.Services = nil, nil
	start.VLANs = nil // made after their laggs (reconcile_vlans.go)
	start.Routes = nil
	a.services = newServices(a)
	go a.routineEvents()
	a.mu.Lock()
	a.cfg = start
	a.publishLocked()
	res, err := a.reconcileLocked(cfg, reconcileOptions{retryMissing: true, refuseMissing: opts.Strict})
	if err == nil {
		a.base = a.cfg.Clone()
	}
	a.mu.Unlock()
	if err != nil {
		a.Close()
		return nil, err
	}
	a.cfgStats.loaded()
	if len(res.Missing) > 0 {
		a.log.Warn("starting degraded: configured ports are missing; each is attached when its interface appears (`ip -br link` lists the interfaces; `ulagg run --strict` refuses to start instead)",
			"missing", strings.Join(res.Missing, ", "))
	}
	return a, nil
}

// OpenHostPort opens an AF_PACKET or TAP port by its configured kind.
func OpenHostPort(p config.Port, log *slog.Logger) (linkep.Port, error) {
	return linkep.Open(p.Kind, p.Name, PortOpenOptions(p, log))
}

// PortOpenOptions are the options OpenHostPort opens configured port p
// with (speed, GSO); a PortOpener of an embedder or a test starts from them
// and adds its own (a network namespace). What config.Port.SameOpening
// compares is what this passes on.
func PortOpenOptions(p config.Port, log *slog.Logger) linkep.OpenOptions {
	return linkep.OpenOptions{SpeedMbps: p.SpeedMbps, DisableGSO: p.DisableGSO, CarrierPoll: p.CarrierPoll(), Logger: log}
}

// Stack returns the gVisor stack.
func (a *Appliance) Stack() *gstack.Stack { return a.s }

// Config returns a copy of the configuration in force, including runtime
// changes and ports configured but missing. It does not wait for a change
// in progress.
func (a *Appliance) Config() *config.Config {
	return a.pub.Load().cfg.Clone()
}

// Lagg returns the lagg named name, or nil.
func (a *Appliance) Lagg(name string) *lagg.Lagg {
	if p, ok := a.pub.Load().laggs[name]; ok {
		return p.l
	}
	return nil
}

// NIC returns the NIC id of lagg name, or 0.
func (a *Appliance) NIC(name string) tcpip.NICID {
	if p, ok := a.pub.Load().laggs[name]; ok {
		return p.nic
	}
	return 0
}

// Status returns every lagg's status, in configuration order, with its
// addresses and its missing ports. It reads what the last change published
// and the laggs' own state, and never waits for a change in progress.
func (a *Appliance) Status() []LaggStatus {
	p := a.pub.Load()
	var out []LaggStatus
	for _, lc := range p.cfg.Laggs {
		pl, ok := p.laggs[lc.Name]
		if !ok {
			continue
		}
		st := LaggStatus{Status: pl.l.Status(), Addresses: slices.Clone(lc.Addresses), AdminUp: !lc.Down}
		st.NIC, st.LinkLocal, st.DHCP = pl.nic, a.linkLocal(pl.nic), a.dhcpStatus(lc.Name) // dhcp.go, linklocal.go
		st.Autoconf = a.slaacAddresses(pl.nic)                                             // slaac.go
		for _, m := range pl.missing {
			if st.Port(m.Name) == nil { // attached since
				st.Missing = append(st.Missing, m)
			}
		}
		out = append(out, st)
	}
	return out
}

// LaggStatus is a lagg's status with what the stack knows about it.
type LaggStatus struct {
	lagg.Status
	Addresses []netip.Prefix
	AdminUp   bool
	// Missing lists the configured ports whose interface does not exist;
	// each is attached when it appears.
	Missing []MissingPort
	// NIC is the lagg's NIC in the stack: the IPv6 scope ID.
	NIC tcpip.NICID
	// LinkLocal is the lagg's IPv6 link-local address (from its MAC);
	// invalid while it has none.
	LinkLocal netip.Prefix
	// DHCP is the lagg's DHCP client, nil if it runs none.
	DHCP *DHCPStatus
	// Autoconf are the IPv6 addresses SLAAC gave the lagg.
	Autoconf []netip.Prefix
}

// MissingPort is a configured port whose interface is missing.
type MissingPort struct {
	config.Port
	Reason string // why, as the last attempt to open it said
}

// CreateLagg creates a lagg from lc (validated as part of the whole config).
func (a *Appliance) CreateLagg(lc config.Lagg) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg.Lagg(lc.Name) != nil {
		return fmt.Errorf("%s already exists", lc.Name)
	}
	next := a.cfg.Clone()
	next.Laggs = append(next.Laggs, lc)
	return a.applyLocked(next, reconcileOptions{refuseNewMissing: true})
}

// DestroyLagg removes a lagg, giving its ports back their MAC and MTU.
func (a *Appliance) DestroyLagg(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cfg.Lagg(name) == nil {
		return fmt.Errorf("%s does not exist", name)
	}
	next := a.cfg.Clone()
	next.Laggs = slices.DeleteFunc(next.Laggs, func(l config.Lagg) bool { return l.Name == name })
	return a.applyLocked(next, reconcileOptions{})
}

// ApplyLagg changes a running lagg to match lc: protocol, options, MTU, MAC,
// ports, addresses and admin state, touching only what differs. It applies
// all of it or, if a step fails, puts back what it changed and returns the
// error.
func (a *Appliance) ApplyLagg(lc config.Lagg) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.cfg.Clone()
	cur := next.Lagg(lc.Name)
	if cur == nil {
		return fmt.Errorf("%s does not exist", lc.Name)
	}
	*cur = lc
	return a.applyLocked(next, reconcileOptions{refuseNewMissing: true})
}

// applyLocked validates next and reconciles to it.
//
// +checklocks:a.mu
func (a *Appliance) applyLocked(next *config.Config, o reconcileOptions) error {
	if err := next.Validate(); err != nil {
		return err
	}
	rr, err := a.reconcileLocked(next, o)
	if err == nil {
		a.configEvent("api", rr.Items)
	}
	return err
}

// laggConfig converts a configured lagg to the endpoint's settings.
func laggConfig(lc config.Lagg) (lagg.Config, error) {
	c := lagg.DefaultConfig()
	c.Proto = lagg.Proto(lc.Proto)
	c.MTU = lc.MTU
	c.MAC = tcpip.LinkAddress(lc.MAC)
	h, err := lagg.ParseHashLayers(lc.Hash)
	if err != nil {
		return c, fmt.Errorf("%s: %w", lc.Name, err)
	}
	c.Hash = h
	c.RxAll = lc.Failover.RxAll
	c.RoundRobin.Stride = lc.RoundRobin.Stride
	c.UpDelay, c.DownDelay = lc.UpDelay, lc.DownDelay
	c.AnnounceCount, c.AnnounceInterval = lc.AnnounceSettings()
	c.LACP = lagg.LACPOptions{
		MultiSpeed:     lc.LACP.MultiSpeed,
		MaxPorts:       lc.LACP.MaxPorts,
		FastRate:       lc.LACP.Rate == "fast",
		Passive:        lc.LACP.Mode == "passive",
		SystemPriority: lc.LACP.SystemPriority,
		Key:            lc.LACP.Key,
		MinPorts:       lc.LACP.MinPorts,
		Fallback:       lc.LACP.Fallback,
		Select:         lagg.LACPSelect(lc.LACP.Select),
	}
	if m := lc.Monitor; m.Enabled() {
		// Probes need no address of the lagg: ARP probes come from
		// 0.0.0.0 and NS from each port's link-local (lagg/monitor.go).
		c.Monitor = &lagg.MonitorOptions{
			ARPTargets: m.ARPTargets, NSTargets: m.NSTargets, Interval: m.Interval, MissedMax: m.MissedMax,
			Validate: lagg.MonitorValidate(m.Validate), Require: lagg.MonitorRequire(m.Require),
		}
	}
	return c, nil
}

// Reload applies a new configuration, changing only what differs, all of
// it or nothing: it is ReloadConfig.
func (a *Appliance) Reload(next *config.Config) error {
	return a.ReloadConfig(next)
}

// Drops returns the IP stack's drop counters and the frames captures
// dropped, for status and metrics.
func (a *Appliance) Drops() (stack []ustack.Drop, capture uint64) {
	return ustack.Drops(a.s), a.captureDrops.Load()
}

// nicsLocked maps each lagg to its NIC.
//
// +checklocks:a.mu
func (a *Appliance) nicsLocked() map[string]tcpip.NICID {
	m := make(map[string]tcpip.NICID, len(a.ifaces))
	for name, i := range a.ifaces {
		m[name] = i.nic
	}
	for name, vn := range a.vlans {
		m[name] = vn.i.nic
	}
	return m
}

// Close stops the services, removes every lagg (ports get their MAC and MTU
// back) and stops the stack. It is idempotent.
func (a *Appliance) Close() {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	svc := a.services
	a.mu.Unlock()
	close(a.evStop)
	<-a.evDone
	svc.close()
	a.mu.Lock()
	a.closeVLANsLocked() // before their laggs
	for _, lc := range slices.Clone(a.cfg.Laggs) {
		if i := a.ifaces[lc.Name]; i != nil {
			a.destroyIfaceLocked(i)
		}
	}
	a.cfg.Laggs = nil
	a.cfg.VLANs = nil
	a.publishLocked()
	a.mu.Unlock()
	a.s.Close()
	a.s.Wait()
	a.ra.Close()
}
