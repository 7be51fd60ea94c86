package appliance

import (
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/lagg"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/dhcp"
)

// DHCP clients of the interfaces whose addresses say "dhcp". The
// reconciliation starts one when the interface's NIC exists and stops it
// (releasing the lease) before the NIC goes; the client keeps the leased
// address on the NIC through the route table, and its events set the
// default route (origin dhcp) and, on a lagg whose MTU is automatic, a
// smaller MTU the server asks for. Failover keeps the lease: the lagg's MAC,
// which the client identifies itself by, is the same on every port.

// dhcpRun is one interface's client. Immutable once made.
type dhcpRun struct {
	name string
	nic  tcpip.NICID
	l    *lagg.Lagg
	c    *dhcp.Client
}

// dhcpRuns are the running clients by interface name. Its own lock, not
// Appliance.mu: status readers and the clients' event callbacks use it,
// and a callback must never wait for a reconciliation, which may be
// closing that client.
type dhcpRuns struct {
	mu sync.Mutex
	// +checklocks:mu
	m map[string]*dhcpRun
}

func (d *dhcpRuns) get(name string) *dhcpRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.m[name]
}

func (d *dhcpRuns) all() []*dhcpRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]*dhcpRun, 0, len(d.m))
	for _, r := range d.m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *dhcpRun) int { return strings.Compare(a.name, b.name) })
	return out
}

func (d *dhcpRuns) put(r *dhcpRun) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]*dhcpRun{}
	}
	d.m[r.name] = r
}

func (d *dhcpRuns) take(name string) *dhcpRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.m[name]
	delete(d.m, name)
	return r
}

// syncDHCPLocked starts the clients a.cfg asks for whose NIC exists, and
// stops (releasing their lease) those it no longer asks for or whose NIC
// was replaced.
//
// +checklocks:a.mu
func (a *Appliance) syncDHCPLocked() {
	type nicOf struct {
		nic tcpip.NICID
		l   *lagg.Lagg // nil for a VLAN: its MTU is its lagg's
	}
	want := map[string]nicOf{}
	for _, lc := range a.cfg.Laggs {
		if i := a.ifaces[lc.Name]; lc.DHCP && i != nil {
			want[lc.Name] = nicOf{i.nic, i.l}
		}
	}
	for _, vc := range a.cfg.VLANs {
		if vn := a.vlans[vc.Name]; vc.DHCP && vn != nil {
			want[vc.Name] = nicOf{vn.i.nic, nil}
		}
	}
	for _, r := range a.dhcp.all() {
		if w, ok := want[r.name]; !ok || w.nic != r.nic {
			a.stopDHCPLocked(r.name)
		}
	}
	for name, w := range want {
		if a.dhcp.get(name) == nil {
			a.startDHCPLocked(name, w.nic, w.l)
		}
	}
}

// startDHCPLocked starts a client on nic; a failure is logged (the
// interface runs without the lease; the next reconciliation retries).
//
// +checklocks:a.mu
func (a *Appliance) startDHCPLocked(name string, nic tcpip.NICID, l *lagg.Lagg) {
	r := &dhcpRun{name: name, nic: nic, l: l}
	host, _ := os.Hostname()
	c, err := dhcp.New(dhcp.Config{
		Stack:         a.s,
		NIC:           nic,
		Hostname:      host,
		Logger:        a.log.With("iface", name),
		AddAddress:    func(p netip.Prefix) error { return a.routes.AddAddress(nic, p) },
		RemoveAddress: func(p netip.Prefix) error { return a.routes.RemoveAddress(nic, p) },
		OnEvent:       func(ev dhcp.Event) { a.dhcpEvent(r, ev) },
	})
	if err == nil {
		r.c = c
		err = c.Start()
	}
	if err != nil {
		a.log.Warn("DHCP client not started", "iface", name, "err", err)
		return
	}
	a.dhcp.put(r)
	a.log.Info("DHCP client started", "iface", name)
}

// stopDHCPLocked stops name's client, if any, releasing its lease; the NIC
// must still exist for the RELEASE to leave.
//
// +checklocks:a.mu
func (a *Appliance) stopDHCPLocked(name string) {
	if r := a.dhcp.take(name); r != nil {
		r.c.Close()
		a.log.Info("DHCP client stopped", "iface", name)
	}
}

// Monitor event kinds of the DHCP client: "dhcp-" and the dhcp.EventKind
// (acquired, renewed, lost, released); Detail is the lease, Reason why a
// lease was lost.
const EventDHCPPrefix = "dhcp-"

// dhcpEvent applies a lease change: the default route, and the MTU; and
// tells `ulagg monitor`. It runs on the client's goroutine and takes no
// appliance lock.
func (a *Appliance) dhcpEvent(r *dhcpRun, ev dhcp.Event) {
	defer a.events.publish(MonitorEvent{
		EventJSON: lagg.EventJSON{Time: time.Now(), Lagg: r.name, Kind: EventDHCPPrefix + ev.Kind.String(),
			Detail: fmt.Sprintf("%s from %s lease %ds", ev.Lease.Address, ev.Lease.Server, int64(ev.Lease.Time/time.Second))},
		Reason: ev.Reason,
	})
	switch ev.Kind {
	case dhcp.Acquired, dhcp.Renewed:
		var routes []ustack.Route
		if ev.Lease.Router.IsValid() {
			routes = []ustack.Route{{To: netip.PrefixFrom(netip.IPv4Unspecified(), 0), Via: ev.Lease.Router}}
		}
		a.routes.Set(ustack.RouteDHCP, r.nic, routes)
		a.dhcpMTU(r, ev.Lease.MTU)
	case dhcp.Lost, dhcp.Released:
		a.routes.Set(ustack.RouteDHCP, r.nic, nil)
		a.dhcpMTU(r, 0)
	}
}

// dhcpMTU applies a lease's interface MTU option to a lagg whose MTU is
// automatic (mtu absent from its configuration), only to lower it: a larger
// MTU than the ports have is not the server's to give. 0 puts the
// automatic MTU back. A port that refuses it leaves the MTU automatic.
// While the configured MTU is automatic, a set lagg MTU is the lease's.
func (a *Appliance) dhcpMTU(r *dhcpRun, mtu uint16) {
	if r.l == nil {
		return
	}
	if lc := a.pub.Load().cfg.Lagg(r.name); lc == nil || lc.MTU != 0 {
		return // configured MTU wins
	}
	cur := r.l.Config().MTU
	if cur == uint32(mtu) {
		return
	}
	if cur != 0 { // the previous lease's: automatic again first, to compare with
		if err := r.l.Update(func(c *lagg.Config) { c.MTU = 0 }); err != nil {
			a.log.Warn("MTU from DHCP not undone", "iface", r.name, "err", err)
			return
		}
	}
	if mtu == 0 || uint32(mtu) >= r.l.MTU() {
		return
	}
	if err := r.l.Update(func(c *lagg.Config) { c.MTU = uint32(mtu) }); err != nil {
		a.log.Warn("DHCP MTU option not applied", "iface", r.name, "mtu", mtu, "err", err)
		return
	}
	a.log.Info("MTU from DHCP", "iface", r.name, "mtu", mtu)
}

// DHCPStatus is an interface's DHCP client as status shows it.
type DHCPStatus struct {
	dhcp.Status
	Now time.Time // when Status was taken, for the times left
}

// dhcpStatus returns name's client status, or nil if it runs none.
func (a *Appliance) dhcpStatus(name string) *DHCPStatus {
	r := a.dhcp.get(name)
	if r == nil {
		return nil
	}
	return &DHCPStatus{Status: r.c.Status(), Now: time.Now()}
}

// format writes the leased address as an inet line, as ifconfig shows
// every address of an interface, and the dhcp line; nothing for nil.
func (s *DHCPStatus) format(b *strings.Builder) {
	if s == nil {
		return
	}
	if s.HasLease {
		formatAddress(b, s.Lease.Address)
	}
	b.WriteString("\t" + s.Line() + "\n")
}

// Line is the status text line: "dhcp: bound 192.168.1.50/24 from
// 192.168.1.1 lease 3600s renew in 1790s".
func (s *DHCPStatus) Line() string {
	if !s.HasLease {
		return "dhcp: " + s.State.String()
	}
	l := s.Lease
	line := fmt.Sprintf("dhcp: %s %s from %s lease %ds", s.State, l.Address, l.Server, int64(l.Time/time.Second))
	switch s.State {
	case dhcp.Bound:
		line += fmt.Sprintf(" renew in %ds", secondsUntil(s.Now, l.RenewAt()))
	case dhcp.Renewing:
		line += fmt.Sprintf(" rebind in %ds", secondsUntil(s.Now, l.RebindAt()))
	case dhcp.Rebinding:
		line += fmt.Sprintf(" expires in %ds", secondsUntil(s.Now, l.ExpiresAt()))
	}
	if l.Router.IsValid() {
		line += " router " + l.Router.String()
	}
	if l.MTU != 0 {
		line += fmt.Sprintf(" mtu %d", l.MTU)
	}
	return line
}

func secondsUntil(now, t time.Time) int64 {
	return max(int64(t.Sub(now).Round(time.Second)/time.Second), 0)
}

// DHCPJSON is the JSON form of an interface's DHCP client.
type DHCPJSON struct {
	State      string   `json:"state"` // init, selecting, requesting, bound, renewing, rebinding
	Address    string   `json:"address,omitempty"`
	Server     string   `json:"server,omitempty"`
	Router     string   `json:"router,omitempty"`
	DNS        []string `json:"dns,omitempty"`
	MTU        uint16   `json:"mtu,omitempty"`
	LeaseS     int64    `json:"lease_s,omitempty"`
	RenewInS   int64    `json:"renew_in_s,omitempty"`
	RebindInS  int64    `json:"rebind_in_s,omitempty"`
	ExpiresInS int64    `json:"expires_in_s,omitempty"`
	Acquired   uint64   `json:"acquired"`
	Renewals   uint64   `json:"renewals"`
	Lost       uint64   `json:"lost"`
	NAKs       uint64   `json:"naks"`
}

// JSON converts s.
func (s *DHCPStatus) JSON() *DHCPJSON {
	j := &DHCPJSON{State: s.State.String(), Acquired: s.Acquired, Renewals: s.Renewals, Lost: s.Lost, NAKs: s.NAKs}
	if !s.HasLease {
		return j
	}
	l := s.Lease
	j.Address, j.Server = l.Address.String(), l.Server.String()
	if l.Router.IsValid() {
		j.Router = l.Router.String()
	}
	for _, d := range l.DNS {
		j.DNS = append(j.DNS, d.String())
	}
	j.MTU = l.MTU
	j.LeaseS = int64(l.Time / time.Second)
	j.RenewInS = secondsUntil(s.Now, l.RenewAt())
	j.RebindInS = secondsUntil(s.Now, l.RebindAt())
	j.ExpiresInS = secondsUntil(s.Now, l.ExpiresAt())
	return j
}
