package appliance

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	_ "github.com/ulagg/ulagg/linkep/host" // the host port kinds
	ustack "github.com/ulagg/ulagg/stack"
)

// PortOpener opens a child endpoint for a configured port.
type PortOpener func(p config.Port, log *slog.Logger) (linkep.Port, error)

// Options configure an Appliance.
type Options struct {
	Logger *slog.Logger
	// OpenPort opens ports; nil opens host interfaces and TAP devices with
	// linkep.Open. Tests pass one that hands out in-memory wire ends.
	OpenPort PortOpener
}

// Appliance is the running ulagg: one gVisor stack, a NIC per lagg, and the
// services. Every change goes through its methods, which are serialised, so
// the control socket, a reload and the initial configuration share one path.
type Appliance struct {
	log *slog.Logger
	s   *gstack.Stack

	mu sync.Mutex
	// +checklocks:mu
	open PortOpener
	// +checklocks:mu
	cfg *config.Config // what is applied now
	// +checklocks:mu
	ifaces map[string]*iface
	// +checklocks:mu
	nextNIC tcpip.NICID
	// +checklocks:mu
	services *services
	// +checklocks:mu
	closed bool
}

// iface is one lagg and its NIC.
type iface struct {
	l   *lagg.Lagg
	nic tcpip.NICID
}

// New builds the stack and applies cfg. On error nothing is left running.
func New(cfg *config.Config, opts Options) (*Appliance, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s, err := ustack.NewNetstack()
	if err != nil {
		return nil, err
	}
	a := &Appliance{
		log:     opts.Logger,
		open:    opts.OpenPort,
		s:       s,
		cfg:     config.Default(),
		ifaces:  map[string]*iface{},
		nextNIC: 1,
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.open == nil {
		a.open = OpenHostPort
	}
	a.cfg.Control, a.cfg.Metrics = cfg.Control, cfg.Metrics
	a.services = newServices(a)
	a.mu.Lock()
	for _, lc := range cfg.Laggs {
		if err := a.createLaggLocked(lc); err != nil {
			a.mu.Unlock()
			a.Close()
			return nil, err
		}
	}
	if err := a.services.apply(cfg.Services, a.nicsLocked()); err != nil {
		a.mu.Unlock()
		a.Close()
		return nil, err
	}
	a.cfg.Services = slices.Clone(cfg.Services)
	a.mu.Unlock()
	return a, nil
}

// OpenHostPort opens an AF_PACKET or TAP port by its configured kind.
func OpenHostPort(p config.Port, log *slog.Logger) (linkep.Port, error) {
	return linkep.Open(p.Kind, p.Name, linkep.OpenOptions{SpeedMbps: p.SpeedMbps, Logger: log})
}

// Stack returns the gVisor stack.
func (a *Appliance) Stack() *gstack.Stack { return a.s }

// Config returns a copy of the configuration in force, including runtime
// changes.
func (a *Appliance) Config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg.Clone()
}

// Lagg returns the lagg named name, or nil.
func (a *Appliance) Lagg(name string) *lagg.Lagg {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i := a.ifaces[name]; i != nil {
		return i.l
	}
	return nil
}

// NIC returns the NIC id of lagg name, or 0.
func (a *Appliance) NIC(name string) tcpip.NICID {
	a.mu.Lock()
	defer a.mu.Unlock()
	if i := a.ifaces[name]; i != nil {
		return i.nic
	}
	return 0
}

// Status returns every lagg's status, in configuration order, with its
// addresses.
func (a *Appliance) Status() []LaggStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []LaggStatus
	for _, lc := range a.cfg.Laggs {
		if i := a.ifaces[lc.Name]; i != nil {
			out = append(out, LaggStatus{Status: i.l.Status(), Addresses: slices.Clone(lc.Addresses), AdminUp: !lc.Down})
		}
	}
	return out
}

// LaggStatus is a lagg's status with what the stack knows about it.
type LaggStatus struct {
	lagg.Status
	Addresses []netip.Prefix
	AdminUp   bool
}

// CreateLagg creates a lagg from lc (validated as part of the whole config).
func (a *Appliance) CreateLagg(lc config.Lagg) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.cfg.Clone()
	next.Laggs = append(next.Laggs, lc)
	if err := next.Validate(); err != nil {
		return err
	}
	return a.createLaggLocked(lc)
}

// +checklocks:a.mu
func (a *Appliance) createLaggLocked(lc config.Lagg) error {
	if a.closed {
		return errors.New("appliance is closed")
	}
	if a.ifaces[lc.Name] != nil {
		return fmt.Errorf("%s already exists", lc.Name)
	}
	settings, err := laggConfig(lc)
	if err != nil {
		return err
	}
	l, err := lagg.New(lagg.Options{Name: lc.Name, Config: settings, Logger: a.log})
	if err != nil {
		return err
	}
	nic := a.nextNIC
	if err := ustack.AddInterface(a.s, nic, lc.Name, l, nil); err != nil {
		l.Close()
		return err
	}
	a.nextNIC++
	i := &iface{l: l, nic: nic}
	a.ifaces[lc.Name] = i
	l.SetAnnouncer(func() {
		if err := ustack.Announce(a.s, nic); err != nil {
			a.log.Debug("announce", "lagg", lc.Name, "err", err)
		}
	})
	applied := config.NewLagg(lc.Name)
	applied.Proto, applied.MTU, applied.MAC = lc.Proto, lc.MTU, lc.MAC
	applied.Hash, applied.UpDelay, applied.DownDelay = lc.Hash, lc.UpDelay, lc.DownDelay
	applied.Failover, applied.LACP, applied.RoundRobin = lc.Failover, lc.LACP, lc.RoundRobin
	a.cfg.Laggs = append(a.cfg.Laggs, applied)
	// Down before any port or address: a lagg created down never carries a
	// frame.
	if err := a.setAdminLocked(lc.Name, lc.Down); err != nil {
		a.destroyLaggLocked(lc.Name)
		return err
	}
	if err := a.applyLaggLocked(lc); err != nil {
		a.destroyLaggLocked(lc.Name)
		return err
	}
	a.log.Info("lagg created", "lagg", lc.Name, "proto", lc.Proto, "ports", len(lc.Ports), "addresses", len(lc.Addresses))
	return nil
}

// DestroyLagg removes a lagg, giving its ports back their MAC and MTU.
func (a *Appliance) DestroyLagg(name string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ifaces[name] == nil {
		return fmt.Errorf("%s does not exist", name)
	}
	a.destroyLaggLocked(name)
	return nil
}

// +checklocks:a.mu
func (a *Appliance) destroyLaggLocked(name string) {
	i := a.ifaces[name]
	delete(a.ifaces, name)
	a.cfg.Laggs = slices.DeleteFunc(a.cfg.Laggs, func(l config.Lagg) bool { return l.Name == name })
	if err := a.s.RemoveNIC(i.nic); err != nil {
		a.log.Warn("remove NIC", "lagg", name, "err", err)
	}
	i.l.Close()
	a.log.Info("lagg destroyed", "lagg", name)
}

// ApplyLagg changes a running lagg to match lc: protocol, options, MTU, MAC,
// ports and addresses, touching only what differs. It applies all of it or,
// if a step fails, puts back what it changed and returns the error.
func (a *Appliance) ApplyLagg(lc config.Lagg) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.cfg.Clone()
	cur := next.Lagg(lc.Name)
	if cur == nil {
		return fmt.Errorf("%s does not exist", lc.Name)
	}
	*cur = lc
	if err := next.Validate(); err != nil {
		return err
	}
	return a.applyLaggLocked(lc)
}

// +checklocks:a.mu
func (a *Appliance) applyLaggLocked(want config.Lagg) error {
	old := cloneLagg(*a.cfg.Lagg(want.Name))
	if err := a.stepLaggLocked(want); err != nil {
		if rerr := a.stepLaggLocked(old); rerr != nil {
			a.log.Error("rolling back a failed change", "lagg", want.Name, "err", rerr)
		}
		return err
	}
	return nil
}

// stepLaggLocked moves the running lagg from the applied config towards
// want: its settings in one lagg.Apply (itself all or nothing), then ports
// and addresses one by one, updating the applied config step by step so a
// rollback knows where it stands.
//
// +checklocks:a.mu
func (a *Appliance) stepLaggLocked(want config.Lagg) error {
	i := a.ifaces[want.Name]
	cur := a.cfg.Lagg(want.Name)
	l := i.l
	settings, err := laggConfig(want)
	if err != nil {
		return err
	}
	if err := l.Apply(settings); err != nil {
		return err
	}
	cur.Proto, cur.MTU, cur.MAC, cur.Hash = want.Proto, want.MTU, slices.Clone(want.MAC), slices.Clone(want.Hash)
	cur.UpDelay, cur.DownDelay, cur.Failover, cur.LACP, cur.RoundRobin = want.UpDelay, want.DownDelay, want.Failover, want.LACP, want.RoundRobin
	// Ports: remove what left or changed kind, then add and re-prioritise.
	for _, p := range slices.Clone(cur.Ports) {
		w := findPort(want.Ports, p.Name)
		if w != nil && w.Kind == p.Kind && w.SpeedMbps == p.SpeedMbps {
			continue
		}
		if err := l.RemovePort(p.Name); err != nil {
			return err
		}
		cur.Ports = slices.DeleteFunc(cur.Ports, func(q config.Port) bool { return q.Name == p.Name })
	}
	for _, w := range want.Ports {
		c := findPort(cur.Ports, w.Name)
		if c == nil {
			child, err := a.open(w, a.log)
			if err != nil {
				return fmt.Errorf("%s: port %s: %w", want.Name, w.Name, err)
			}
			if err := l.AddPort(child, w.Priority); err != nil {
				child.Close()
				return err
			}
			cur.Ports = append(cur.Ports, w)
			continue
		}
		if c.Priority != w.Priority {
			if err := l.SetPortPriority(w.Name, w.Priority); err != nil {
				return err
			}
			c.Priority = w.Priority
		}
	}
	// Keep the configured order of ports.
	slices.SortStableFunc(cur.Ports, func(x, y config.Port) int {
		return portIndex(want.Ports, x.Name) - portIndex(want.Ports, y.Name)
	})
	// Addresses.
	for _, p := range slices.Clone(cur.Addresses) {
		if !slices.Contains(want.Addresses, p) {
			if err := ustack.RemoveAddress(a.s, i.nic, p); err != nil {
				return err
			}
			cur.Addresses = slices.DeleteFunc(cur.Addresses, func(q netip.Prefix) bool { return q == p })
		}
	}
	added := false
	for _, p := range want.Addresses {
		if !slices.Contains(cur.Addresses, p) {
			if err := ustack.AddAddress(a.s, i.nic, p); err != nil {
				return err
			}
			cur.Addresses = append(cur.Addresses, p)
			added = true
		}
	}
	if added {
		if err := ustack.Announce(a.s, i.nic); err != nil {
			a.log.Debug("announce", "lagg", want.Name, "err", err)
		}
	}
	return nil
}

func cloneLagg(l config.Lagg) config.Lagg {
	return (&config.Config{Laggs: []config.Lagg{l}}).Clone().Laggs[0]
}

func findPort(ports []config.Port, name string) *config.Port {
	for i := range ports {
		if ports[i].Name == name {
			return &ports[i]
		}
	}
	return nil
}

func portIndex(ports []config.Port, name string) int {
	for i := range ports {
		if ports[i].Name == name {
			return i
		}
	}
	return len(ports)
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
	c.LACP = lagg.LACPOptions{
		MultiSpeed:     lc.LACP.MultiSpeed,
		MaxPorts:       lc.LACP.MaxPorts,
		FastRate:       lc.LACP.Rate == "fast",
		Passive:        lc.LACP.Mode == "passive",
		SystemPriority: lc.LACP.SystemPriority,
		Key:            lc.LACP.Key,
		MinPorts:       lc.LACP.MinPorts,
		Fallback:       lc.LACP.Fallback,
	}
	return c, nil
}

// Reload applies a new configuration, changing only what differs. The new
// file must validate as a whole first; if applying fails part-way, the laggs
// already changed keep their new state and the error says where it stopped.
func (a *Appliance) Reload(next *config.Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, ch := range config.Diff(a.cfg, next) {
		var err error
		switch ch.Op {
		case "remove-lagg":
			a.destroyLaggLocked(ch.Lagg)
		case "add-lagg":
			err = a.createLaggLocked(*ch.New)
		case "update-lagg":
			err = a.applyLaggLocked(*ch.New)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ch.Lagg, err))
		}
	}
	if !config.ServicesEqual(a.cfg, next) {
		if err := a.services.apply(next.Services, a.nicsLocked()); err != nil {
			errs = append(errs, err)
		} else {
			a.cfg.Services = slices.Clone(next.Services)
		}
	}
	a.cfg.Control, a.cfg.Metrics = next.Control, next.Metrics
	return errors.Join(errs...)
}

// nicsLocked maps each lagg to its NIC.
//
// +checklocks:a.mu
func (a *Appliance) nicsLocked() map[string]tcpip.NICID {
	m := make(map[string]tcpip.NICID, len(a.ifaces))
	for name, i := range a.ifaces {
		m[name] = i.nic
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
	svc.close()
	a.mu.Lock()
	for _, lc := range slices.Clone(a.cfg.Laggs) {
		if a.ifaces[lc.Name] != nil {
			a.destroyLaggLocked(lc.Name)
		}
	}
	a.mu.Unlock()
	a.s.Close()
	a.s.Wait()
}
