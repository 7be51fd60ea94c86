package config

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The diff engine. Every path that changes a running appliance (startup,
// ifconfig, reload, SIGHUP) and every report of a difference (the lines
// `ulagg reload` prints, `ulagg diff`, the runtime changes a reload would
// discard) goes through Diff and Items: there is one notion of what
// differs.

// Change operations reported by Diff.
const (
	OpAddLagg    = "add-lagg"
	OpRemoveLagg = "remove-lagg"
	OpUpdateLagg = "update-lagg"
)

// Change is one lagg-level difference between two configs. Old is nil for
// add-lagg and New is nil for remove-lagg; both point into the configs
// given to Diff. Items says what differs, one item per setting, port,
// address or admin state: for add-lagg, what differs from a new lagg's
// defaults (NewLagg), after an ItemLagg item; for remove-lagg, one ItemLagg
// item.
type Change struct {
	Lagg     string
	Op       string
	Old, New *Lagg
	Items    []Item
}

// Item kinds.
const (
	ItemLagg    = "lagg"    // a lagg created (New set) or destroyed (Old set)
	ItemSetting = "setting" // Name is the TOML key: proto, mtu, lacp.rate, ...
	ItemAdmin   = "admin"   // the lagg's admin state (the down key): "up" or "down"
	ItemPort    = "port"    // Name is the port; OldPort and NewPort
	ItemAddress = "address" // Name is the address; OldAddr and NewAddr
	ItemService = "service" // Name is "KIND PORT" or "KIND PORT LAGG"
	ItemMetrics = "metrics" // metrics.listen
	ItemControl = "control" // control.socket
	ItemLimits  = "limits"  // limits.memory_mb, syn_rate, syn_burst: applied at start
)

// Item is one difference, small enough to be one line of a report. Old and
// New are the values in words, "" when absent.
type Item struct {
	Lagg     string // "" for services, metrics and control
	Kind     string
	Name     string
	Old, New string
	// For ItemPort: the port on each side, nil when absent.
	OldPort, NewPort *Port
	// For ItemAddress: the prefix on each side, invalid when absent.
	OldAddr, NewAddr netip.Prefix
}

// Key identifies what an item is about (a lagg's port, a setting, ...),
// whatever the values: two diffs touch the same thing when their items
// have equal keys.
func (it Item) Key() string { return it.Lagg + "\x00" + it.Kind + "\x00" + it.Name }

// String is the item as one line, e.g. "lagg0: port wm2 added (priority
// 3000)" or "lagg0: mtu auto -> 9000".
func (it Item) String() string {
	var b strings.Builder
	if it.Lagg != "" {
		b.WriteString(it.Lagg + ": ")
	}
	switch it.Kind {
	case ItemLagg:
		if it.New != "" {
			b.WriteString("created")
		} else {
			b.WriteString("destroyed")
		}
	case ItemAdmin:
		fmt.Fprintf(&b, "admin %s -> %s", it.Old, it.New)
	case ItemPort:
		switch {
		case it.OldPort == nil:
			fmt.Fprintf(&b, "port %s added (%s)", it.Name, it.New)
		case it.NewPort == nil:
			fmt.Fprintf(&b, "port %s removed (was %s)", it.Name, it.Old)
		default:
			fmt.Fprintf(&b, "port %s %s", it.Name, portChange(*it.OldPort, *it.NewPort))
		}
	case ItemAddress:
		switch {
		case !it.OldAddr.IsValid():
			fmt.Fprintf(&b, "address %s added", it.NewAddr)
		case !it.NewAddr.IsValid():
			fmt.Fprintf(&b, "address %s removed", it.OldAddr)
		default:
			fmt.Fprintf(&b, "address %s -> %s", it.OldAddr, it.NewAddr)
		}
	case ItemRoute:
		b.WriteString(routeItemString(it))
	case ItemVLAN:
		b.WriteString(vlanItemString(it))
	case ItemService:
		switch {
		case it.Old == "":
			fmt.Fprintf(&b, "service %s added", it.Name)
		case it.New == "":
			fmt.Fprintf(&b, "service %s removed", it.Name)
		default:
			fmt.Fprintf(&b, "service %s: limits changed", it.Name)
		}
	default:
		fmt.Fprintf(&b, "%s %s -> %s", it.Name, orNone(it.Old), orNone(it.New))
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// portChange words what differs between two versions of a port.
func portChange(o, n Port) string {
	var d []string
	if o.Kind != n.Kind {
		d = append(d, fmt.Sprintf("kind %s -> %s", o.Kind, n.Kind))
	}
	if o.Priority != n.Priority {
		d = append(d, fmt.Sprintf("priority %d -> %d", o.Priority, n.Priority))
	}
	if o.SpeedMbps != n.SpeedMbps {
		d = append(d, fmt.Sprintf("speed_mbps %d -> %d", o.SpeedMbps, n.SpeedMbps))
	}
	if o.DisableGSO != n.DisableGSO {
		d = append(d, fmt.Sprintf("gso %v -> %v", !o.DisableGSO, !n.DisableGSO))
	}
	if o.Disabled != n.Disabled {
		d = append(d, fmt.Sprintf("disabled %v -> %v", o.Disabled, n.Disabled))
	}
	if o.CarrierPoll() != n.CarrierPoll() {
		d = append(d, fmt.Sprintf("carrier_poll_ms %s -> %s", carrierPollWords(o), carrierPollWords(n)))
	}
	return strings.Join(d, ", ")
}

// portWords is a port's settings in words.
func portWords(p Port) string {
	s := fmt.Sprintf("priority %d", p.Priority)
	if p.Kind != "afpacket" {
		s += ", kind " + p.Kind
	}
	if p.SpeedMbps != 0 {
		s += fmt.Sprintf(", speed_mbps %d", p.SpeedMbps)
	}
	if p.DisableGSO {
		s += ", gso false"
	}
	if p.Disabled {
		s += ", disabled"
	}
	if p.CarrierPollMs != 0 {
		s += ", carrier_poll_ms " + carrierPollWords(p)
	}
	return s
}

// Diff returns the lagg changes that turn old into new: removals first (in
// old's order), then updates and additions (in new's order), each with its
// items. A port moving between laggs shows as removed from one and added
// to the other: the applier releases it before it acquires it. A nil
// config counts as empty. Services, metrics and control are in Items.
func Diff(old, new *Config) []Change {
	if old == nil {
		old = &Config{}
	}
	if new == nil {
		new = &Config{}
	}
	var out []Change
	for i := range old.Laggs {
		o := &old.Laggs[i]
		if new.Lagg(o.Name) == nil {
			out = append(out, Change{Lagg: o.Name, Op: OpRemoveLagg, Old: o, Items: []Item{{Lagg: o.Name, Kind: ItemLagg, Name: o.Name, Old: o.Proto}}})
		}
	}
	for i := range new.Laggs {
		n := &new.Laggs[i]
		if o := old.Lagg(n.Name); o != nil {
			if items := laggItems(o, n); len(items) > 0 {
				out = append(out, Change{Lagg: n.Name, Op: OpUpdateLagg, Old: o, New: n, Items: items})
			}
		}
	}
	for i := range new.Laggs {
		n := &new.Laggs[i]
		if old.Lagg(n.Name) == nil {
			def := NewLagg(n.Name)
			items := append([]Item{{Lagg: n.Name, Kind: ItemLagg, Name: n.Name, New: n.Proto}}, laggItems(&def, n)...)
			out = append(out, Change{Lagg: n.Name, Op: OpAddLagg, New: n, Items: items})
		}
	}
	return out
}

// Items lists every difference between old and new: the laggs' (in Diff's
// order), then services, metrics and the control socket. A nil config
// counts as empty.
func Items(old, new *Config) []Item {
	var out []Item
	for _, c := range Diff(old, new) {
		out = append(out, c.Items...)
	}
	out = append(out, vlanItems(old, new)...) // vlan.go
	return append(out, otherItems(old, new)...)
}

// Lines is Items as one string each.
func Lines(items []Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.String()
	}
	return out
}

// Discarded returns the changes made to the running configuration since
// base (the file as last loaded or saved) that applying file would undo:
// the items of Diff(base, running) about something that Diff(running,
// file) changes too. A lagg created or destroyed on either side counts as
// touching everything in it.
func Discarded(base, running, file *Config) []Item {
	undo := Items(running, file)
	if len(undo) == 0 {
		return nil
	}
	keys := map[string]bool{}
	whole := map[string]bool{} // laggs the file creates or destroys
	for _, it := range undo {
		keys[it.Key()] = true
		if it.Kind == ItemLagg || it.Kind == ItemVLAN { // a VLAN made anew takes its addresses
			whole[it.Lagg] = true
		}
	}
	touched := map[string]bool{} // laggs the file changes at all
	for _, it := range undo {
		touched[it.Lagg] = true
	}
	var out []Item
	for _, it := range Items(base, running) {
		switch {
		case keys[it.Key()]:
		case it.Lagg != "" && whole[it.Lagg]:
		case (it.Kind == ItemLagg || it.Kind == ItemVLAN) && touched[it.Lagg]:
		default:
			continue
		}
		out = append(out, it)
	}
	return out
}

// laggItems lists what differs between two versions of one lagg: settings
// (in the order of the TOML schema), the admin state, ports (old's order
// for removals, new's for the rest), then addresses.
func laggItems(o, n *Lagg) []Item {
	var out []Item
	set := func(key, ov, nv string) {
		if ov != nv {
			out = append(out, Item{Lagg: n.Name, Kind: ItemSetting, Name: key, Old: ov, New: nv})
		}
	}
	for _, s := range laggSettings {
		set(s.key, s.get(o), s.get(n))
	}
	if o.Down != n.Down {
		out = append(out, Item{Lagg: n.Name, Kind: ItemAdmin, Name: "down", Old: adminWord(o.Down), New: adminWord(n.Down)})
	}
	for i := range o.Ports {
		op := &o.Ports[i]
		if j := slices.IndexFunc(n.Ports, func(p Port) bool { return p.Name == op.Name }); j < 0 {
			out = append(out, Item{Lagg: n.Name, Kind: ItemPort, Name: op.Name, Old: portWords(*op), OldPort: op})
		}
	}
	for i := range n.Ports {
		np := &n.Ports[i]
		j := slices.IndexFunc(o.Ports, func(p Port) bool { return p.Name == np.Name })
		switch {
		case j < 0:
			out = append(out, Item{Lagg: n.Name, Kind: ItemPort, Name: np.Name, New: portWords(*np), NewPort: np})
		case o.Ports[j] != *np:
			out = append(out, Item{Lagg: n.Name, Kind: ItemPort, Name: np.Name, Old: portWords(o.Ports[j]), New: portWords(*np), OldPort: &o.Ports[j], NewPort: np})
		}
	}
	// Addresses are keyed by the address: a new prefix length for the
	// same address is one change.
	for _, p := range o.Addresses {
		if !slices.ContainsFunc(n.Addresses, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
			out = append(out, Item{Lagg: n.Name, Kind: ItemAddress, Name: p.Addr().String(), Old: p.String(), OldAddr: p})
		}
	}
	for _, p := range n.Addresses {
		i := slices.IndexFunc(o.Addresses, func(q netip.Prefix) bool { return q.Addr() == p.Addr() })
		switch {
		case i < 0:
			out = append(out, Item{Lagg: n.Name, Kind: ItemAddress, Name: p.Addr().String(), New: p.String(), NewAddr: p})
		case o.Addresses[i] != p:
			out = append(out, Item{Lagg: n.Name, Kind: ItemAddress, Name: p.Addr().String(), Old: o.Addresses[i].String(), New: p.String(), OldAddr: o.Addresses[i], NewAddr: p})
		}
	}
	out = append(out, dhcpItems(n.Name, o.DHCP, n.DHCP)...) // dhcp.go
	out = append(out, flagItems(n.Name, ItemSLAAC, o.SLAAC, n.SLAAC)...)
	return out
}

func adminWord(down bool) string {
	if down {
		return "down"
	}
	return "up"
}

// laggSettings are a lagg's settings (what lagg.Apply takes), each as its
// TOML key and its value in words.
var laggSettings = []struct {
	key string
	get func(l *Lagg) string
}{
	{"proto", func(l *Lagg) string { return l.Proto }},
	{"mtu", func(l *Lagg) string { return autoInt(int64(l.MTU)) }},
	{"mac", func(l *Lagg) string { return macWord(l.MAC) }},
	{"hash", func(l *Lagg) string { return strings.Join(l.Hash, ",") }},
	{"up_delay_ms", func(l *Lagg) string { return ms(l.UpDelay) }},
	{"down_delay_ms", func(l *Lagg) string { return ms(l.DownDelay) }},
	{"failover.rx_all", func(l *Lagg) string { return strconv.FormatBool(l.Failover.RxAll) }},
	{"roundrobin.stride", func(l *Lagg) string { return strconv.Itoa(l.RoundRobin.Stride) }},
	{"lacp.multi_speed", func(l *Lagg) string { return strconv.FormatBool(l.LACP.MultiSpeed) }},
	{"lacp.max_ports", func(l *Lagg) string { return strconv.Itoa(l.LACP.MaxPorts) }},
	{"lacp.rate", func(l *Lagg) string { return l.LACP.Rate }},
	{"lacp.mode", func(l *Lagg) string { return l.LACP.Mode }},
	{"lacp.system_priority", func(l *Lagg) string { return strconv.Itoa(int(l.LACP.SystemPriority)) }},
	{"lacp.key", func(l *Lagg) string { return autoInt(int64(l.LACP.Key)) }},
	{"lacp.min_ports", func(l *Lagg) string { return strconv.Itoa(l.LACP.MinPorts) }},
	{"lacp.fallback", func(l *Lagg) string { return strconv.FormatBool(l.LACP.Fallback) }},
	{"monitor", func(l *Lagg) string { return l.Monitor.String() }},
	{"announce_count", func(l *Lagg) string { n, _ := l.AnnounceSettings(); return strconv.Itoa(n) }}, // announce.go
	{"announce_interval_ms", func(l *Lagg) string { _, iv := l.AnnounceSettings(); return ms(iv) }},   // announce.go
}

func autoInt(v int64) string {
	if v == 0 {
		return "auto"
	}
	return strconv.FormatInt(v, 10)
}

func macWord(m net.HardwareAddr) string {
	if m == nil {
		return "auto"
	}
	return m.String()
}

func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }

// otherItems lists the differences outside the laggs.
func otherItems(old, new *Config) []Item {
	if old == nil {
		old = &Config{}
	}
	if new == nil {
		new = &Config{}
	}
	var out []Item
	// Services are keyed by kind, port and lagg; other differences
	// (limits) change a service.
	was, now := sortedServices(old), sortedServices(new)
	same := func(x, y Service) bool { return x.Kind == y.Kind && x.Port == y.Port && x.Lagg == y.Lagg }
	for _, s := range was {
		if !slices.ContainsFunc(now, func(n Service) bool { return same(s, n) }) {
			out = append(out, Item{Kind: ItemService, Name: serviceName(s), Old: "on"})
		}
	}
	for _, s := range now {
		i := slices.IndexFunc(was, func(o Service) bool { return same(o, s) })
		switch {
		case i < 0:
			out = append(out, Item{Kind: ItemService, Name: serviceName(s), New: "on"})
		case was[i] != s:
			out = append(out, Item{Kind: ItemService, Name: serviceName(s), Old: "on", New: "changed"})
		}
	}
	out = append(out, routeItems(old, new)...)
	if old.Metrics.Listen != new.Metrics.Listen {
		out = append(out, Item{Kind: ItemMetrics, Name: "metrics.listen", Old: old.Metrics.Listen, New: new.Metrics.Listen})
	}
	for _, l := range []struct {
		name     string
		old, new int
	}{
		{"limits.memory_mb", old.Limits.MemoryMB, new.Limits.MemoryMB},
		{"limits.syn_rate", old.Limits.SYNRate, new.Limits.SYNRate},
		{"limits.syn_burst", old.Limits.SYNBurst, new.Limits.SYNBurst},
	} {
		if l.old != l.new {
			out = append(out, Item{Kind: ItemLimits, Name: l.name, Old: autoInt(int64(l.old)), New: autoInt(int64(l.new))})
		}
	}
	// An empty socket is a config that was never loaded (a nil one).
	if old.Control.Socket != new.Control.Socket && old.Control.Socket != "" && new.Control.Socket != "" {
		out = append(out, Item{Kind: ItemControl, Name: "control.socket", Old: old.Control.Socket, New: new.Control.Socket})
	}
	if old.Control.Group != new.Control.Group {
		out = append(out, Item{Kind: ItemControl, Name: "control.group", Old: old.Control.Group, New: new.Control.Group})
	}
	return out
}

func serviceName(s Service) string {
	n := fmt.Sprintf("%s %d", s.Kind, s.Port)
	if s.Lagg != "" {
		n += " on " + s.Lagg
	}
	return n
}

// LaggEqual reports whether a and b configure the same lagg: Diff finds
// nothing between them (nil and empty lists are equal; the order of ports
// is not a change).
func LaggEqual(a, b *Lagg) bool { return a.Name == b.Name && len(laggItems(a, b)) == 0 }

// ServicesEqual reports whether a and b configure the same set of services,
// in any order. A nil config counts as empty.
func ServicesEqual(a, b *Config) bool {
	return slices.Equal(sortedServices(a), sortedServices(b))
}

func sortedServices(c *Config) []Service {
	if c == nil {
		return nil
	}
	s := slices.Clone(c.Services)
	slices.SortFunc(s, func(x, y Service) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Lagg, y.Lagg))
	})
	return s
}

// carrierPollWords is a port's carrier_poll_ms as written in TOML.
func carrierPollWords(p Port) string {
	switch {
	case p.CarrierPollMs < 0:
		return "0 (off)"
	case p.CarrierPollMs == 0:
		return fmt.Sprintf("%d", DefaultCarrierPollMs)
	}
	return fmt.Sprintf("%d", p.CarrierPollMs)
}
