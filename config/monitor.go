package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Monitor is a lagg's link monitor, [lagg.monitor]: probes through every
// port that find failures the carrier does not show (Linux bonding's ARP
// monitor, teamd's arp_ping and nsna_ping). With no target it is off.
// lagg/monitor.go has the design.
type Monitor struct {
	ARPTargets []netip.Addr  // arp_targets: IPv4 addresses answering ARP
	NSTargets  []netip.Addr  // ns_targets: IPv6 addresses answering neighbour solicitations
	Interval   time.Duration // interval_ms; 0: 1000 ms
	MissedMax  int           // missed_max: intervals unanswered before a port is down; 0: 2
	Validate   string        // "all" ("" too), "active" or "backup": which ports need replies to their own probes
	Require    string        // "any" ("" too) or "all": how many targets must answer
}

// Monitor limits, as lagg has them.
const (
	MinMonitorInterval = 10 * time.Millisecond
	MaxMonitorInterval = 60 * time.Second
	MaxMonitorTargets  = 16
)

var (
	monitorKeys      = []string{"arp_targets", "ns_targets", "interval_ms", "missed_max", "validate", "require"}
	monitorValidates = []string{"all", "active", "backup"}
	monitorRequires  = []string{"any", "all"}
	spanMonInterval  = span{lo: MinMonitorInterval.Milliseconds(), hi: MaxMonitorInterval.Milliseconds(), zeroOK: true}
	spanMissed       = span{lo: 1, hi: 255, zeroOK: true}
)

// Enabled reports whether the monitor has a target.
func (m *Monitor) Enabled() bool { return len(m.ARPTargets)+len(m.NSTargets) > 0 }

// Equal reports whether m and o configure the same monitor.
func (m *Monitor) Equal(o *Monitor) bool { return m.String() == o.String() }

// String is the monitor in ifconfig's words ("off" with no target):
// "arp 10.0.0.1 ns fd00::1 interval 100 missed 3 validate all require any",
// defaults filled in.
func (m *Monitor) String() string {
	if !m.Enabled() {
		return "off"
	}
	var b strings.Builder
	for _, a := range m.ARPTargets {
		fmt.Fprintf(&b, "arp %s ", a)
	}
	for _, a := range m.NSTargets {
		fmt.Fprintf(&b, "ns %s ", a)
	}
	iv, missed, validate, require := m.Interval, m.MissedMax, m.Validate, m.Require
	if iv == 0 {
		iv = time.Second
	}
	if missed == 0 {
		missed = 2
	}
	if validate == "" {
		validate = "all"
	}
	if require == "" {
		require = "any"
	}
	fmt.Fprintf(&b, "interval %d missed %d validate %s require %s", iv.Milliseconds(), missed, validate, require)
	return b.String()
}

// monitor decodes [lagg.monitor].
func (d *decoder) monitor(p string, t map[string]any, m *Monitor) {
	d.unknown(p, t, monitorKeys)
	addrs := func(k string) []netip.Addr {
		ss, _ := d.strs(t, p, k)
		var out []netip.Addr
		for i, s := range ss {
			a, err := netip.ParseAddr(s)
			if err != nil {
				d.errorf(indexPath(keyPath(p, k), i), "%q is not an IP address", s)
				continue
			}
			out = append(out, a)
		}
		return out
	}
	m.ARPTargets = addrs("arp_targets")
	m.NSTargets = addrs("ns_targets")
	var ms int64
	if setInt(d, t, p, "interval_ms", spanMonInterval, &ms) {
		m.Interval = time.Duration(ms) * time.Millisecond
	}
	setInt(d, t, p, "missed_max", spanMissed, &m.MissedMax)
	d.str(t, p, "validate", &m.Validate)
	d.str(t, p, "require", &m.Require)
}

// monitor checks a lagg's monitor.
func (v *checker) monitor(p string, m *Monitor) {
	family := func(k string, addrs []netip.Addr, want string, ok func(netip.Addr) bool) {
		if len(addrs) > MaxMonitorTargets {
			v.errorf(keyPath(p, k), "%d targets; at most %d", len(addrs), MaxMonitorTargets)
		}
		for i, a := range addrs {
			key := indexPath(keyPath(p, k), i)
			switch {
			case !ok(a):
				v.errorf(key, "%s is not a unicast %s address", a, want)
			case indexOfAddr(addrs[:i], a) >= 0:
				v.errorf(key, "%s is already given by %s[%d]", a, k, indexOfAddr(addrs[:i], a))
			}
		}
	}
	family("arp_targets", m.ARPTargets, "IPv4", func(a netip.Addr) bool {
		return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	})
	family("ns_targets", m.NSTargets, "IPv6", func(a netip.Addr) bool {
		return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast() && a.Zone() == ""
	})
	if m.Interval%time.Millisecond != 0 {
		v.errorf(keyPath(p, "interval_ms"), "%v is not a whole number of milliseconds", m.Interval)
	} else {
		v.inSpan(keyPath(p, "interval_ms"), m.Interval.Milliseconds(), spanMonInterval)
	}
	v.inSpan(keyPath(p, "missed_max"), int64(m.MissedMax), spanMissed)
	if m.Validate != "" {
		v.oneOf(keyPath(p, "validate"), m.Validate, monitorValidates)
	}
	if m.Require != "" {
		v.oneOf(keyPath(p, "require"), m.Require, monitorRequires)
	}
	if !m.Enabled() && (m.Interval != 0 || m.MissedMax != 0 || m.Validate != "" || m.Require != "") {
		v.errorf(p, "has settings but no arp_targets or ns_targets: give at least one target")
	}
}

func indexOfAddr(addrs []netip.Addr, a netip.Addr) int {
	for i, b := range addrs {
		if a == b {
			return i
		}
	}
	return -1
}

// monitor writes [lagg.monitor] if it is on.
func (w *writer) monitor(m *Monitor) {
	if !m.Enabled() {
		return
	}
	w.table("[lagg.monitor]")
	str := func(addrs []netip.Addr) []string {
		out := make([]string, len(addrs))
		for i, a := range addrs {
			out[i] = a.String()
		}
		return out
	}
	if len(m.ARPTargets) > 0 {
		w.strs("arp_targets", str(m.ARPTargets))
	}
	if len(m.NSTargets) > 0 {
		w.strs("ns_targets", str(m.NSTargets))
	}
	if m.Interval != 0 {
		w.int("interval_ms", m.Interval.Milliseconds())
	}
	if m.MissedMax != 0 {
		w.int("missed_max", int64(m.MissedMax))
	}
	if m.Validate != "" {
		w.str("validate", m.Validate)
	}
	if m.Require != "" {
		w.str("require", m.Require)
	}
}

// monitorEdit is one laggmonitor option: the keys it sets.
type monitorEdit struct {
	off           bool // -laggmonitor
	arp, ns       []netip.Addr
	setARP, setNS bool
	interval      time.Duration
	missed        int
	validate, req string
}

// monitorOption parses `laggmonitor KEYWORD...` (one or more of arp
// ADDR..., ns ADDR..., interval MS, missed N, validate V, require R; -arp
// and -ns clear a list) or `-laggmonitor` (off).
func (p *ifParser) monitorOption() ([]ifOp, error) {
	if p.next() == "-laggmonitor" {
		return []ifOp{{verb: "laggmonitor", mon: &monitorEdit{off: true}}}, nil
	}
	e := &monitorEdit{}
	given := 0
	addrs := func(kw string, v4 bool) ([]netip.Addr, error) {
		var out []netip.Addr
		for !p.done() {
			a, err := netip.ParseAddr(p.peek())
			if err != nil {
				break
			}
			if a.Is4() != v4 {
				return nil, fmt.Errorf("laggmonitor %s: %s is not an %s address", kw, a, map[bool]string{true: "IPv4", false: "IPv6"}[v4])
			}
			p.next()
			out = append(out, a)
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("laggmonitor %s: missing address", kw)
		}
		return out, nil
	}
loop:
	for !p.done() {
		var err error
		switch p.peek() {
		case "arp":
			p.next()
			e.arp, err = addrs("arp", true)
			e.setARP = true
		case "ns":
			p.next()
			e.ns, err = addrs("ns", false)
			e.setNS = true
		case "-arp":
			p.next()
			e.arp, e.setARP = nil, true
		case "-ns":
			p.next()
			e.ns, e.setNS = nil, true
		case "interval":
			p.next()
			var ms int
			ms, err = p.num("laggmonitor interval", "milliseconds", int(MinMonitorInterval.Milliseconds()), int(MaxMonitorInterval.Milliseconds()))
			e.interval = time.Duration(ms) * time.Millisecond
		case "missed":
			p.next()
			e.missed, err = p.num("laggmonitor missed", "count", 1, 255)
		case "validate", "require":
			kw := p.next()
			var v string
			if v, err = p.arg("laggmonitor "+kw, "value"); err == nil {
				set, dst := monitorValidates, &e.validate
				if kw == "require" {
					set, dst = monitorRequires, &e.req
				}
				if !slices.Contains(set, v) {
					err = fmt.Errorf("laggmonitor %s: %q is not one of %s", kw, v, strings.Join(set, ", "))
				}
				*dst = v
			}
		default:
			break loop
		}
		if err != nil {
			return nil, err
		}
		given++
	}
	if given == 0 {
		return nil, fmt.Errorf("laggmonitor: unknown option %q: want arp ADDR..., ns ADDR..., interval MS, missed N, validate all|active|backup or require any|all", p.peek())
	}
	return []ifOp{{verb: "laggmonitor", mon: e}}, nil
}

// words is the edit in canonical words.
func (e *monitorEdit) words() []string {
	if e.off {
		return []string{"-laggmonitor"}
	}
	w := []string{"laggmonitor"}
	list := func(kw string, addrs []netip.Addr) {
		if len(addrs) == 0 {
			w = append(w, "-"+kw)
			return
		}
		w = append(w, kw)
		for _, a := range addrs {
			w = append(w, a.String())
		}
	}
	if e.setARP {
		list("arp", e.arp)
	}
	if e.setNS {
		list("ns", e.ns)
	}
	if e.interval != 0 {
		w = append(w, "interval", fmt.Sprint(e.interval.Milliseconds()))
	}
	if e.missed != 0 {
		w = append(w, "missed", fmt.Sprint(e.missed))
	}
	if e.validate != "" {
		w = append(w, "validate", e.validate)
	}
	if e.req != "" {
		w = append(w, "require", e.req)
	}
	return w
}

// apply makes the edit on m. Settings with no target left are refused
// (they would do nothing); clearing the last target turns the monitor off.
func (e *monitorEdit) apply(m *Monitor) error {
	if e.off {
		*m = Monitor{}
		return nil
	}
	if e.setARP {
		m.ARPTargets = slices.Clone(e.arp)
	}
	if e.setNS {
		m.NSTargets = slices.Clone(e.ns)
	}
	if e.interval != 0 {
		m.Interval = e.interval
	}
	if e.missed != 0 {
		m.MissedMax = e.missed
	}
	if e.validate != "" {
		m.Validate = e.validate
	}
	if e.req != "" {
		m.Require = e.req
	}
	if !m.Enabled() {
		if e.interval != 0 || e.missed != 0 || e.validate != "" || e.req != "" {
			return fmt.Errorf("no arp or ns target: give one (laggmonitor arp ADDR or ns ADDR)")
		}
		*m = Monitor{} // no target left: off, settings and all
	}
	return nil
}
