package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// decoder turns the generic map from the TOML library into a Config. It
// walks the map by hand rather than letting the library fill structs, so
// that it can report every bad key (the library stops at the first type
// error) and can match keys exactly (the library folds case).
type decoder struct {
	errs []*Error
}

func (d *decoder) errorf(key, format string, args ...any) {
	d.errs = append(d.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// reported says whether key, or a table or array holding it, already has an
// error, so that Validate does not repeat the complaint about a default that
// stood in for a rejected value.
func (d *decoder) reported(key string) bool {
	for _, e := range d.errs {
		if key == e.Key || strings.HasPrefix(key, e.Key+".") || strings.HasPrefix(key, e.Key+"[") {
			return true
		}
	}
	return false
}

// span is an inclusive integer range; zeroOK also admits 0 (meaning "unset").
type span struct {
	lo, hi int64
	zeroOK bool
}

func (s span) contains(v int64) bool {
	return s.zeroOK && v == 0 || v >= s.lo && v <= s.hi
}

// check returns "" if v is in range, else the complaint.
func (s span) check(v int64) string {
	switch {
	case s.contains(v):
		return ""
	case s.hi == math.MaxInt64:
		return fmt.Sprintf("%d is out of range: must not be below %d", v, s.lo)
	case s.zeroOK:
		return fmt.Sprintf("%d is out of range %d..%d (or 0 for unset)", v, s.lo, s.hi)
	}
	return fmt.Sprintf("%d is out of range %d..%d", v, s.lo, s.hi)
}

var (
	spanU16       = span{lo: 0, hi: math.MaxUint16}
	spanPort      = span{lo: 1, hi: math.MaxUint16}
	spanMTU       = span{lo: 68, hi: math.MaxUint16, zeroOK: true}
	spanDelayMs   = span{lo: 0, hi: MaxDelay.Milliseconds()}
	spanLACPPorts = span{lo: 1, hi: MaxLACPPorts}
	spanSysPrio   = span{lo: 1, hi: math.MaxUint16}
	spanStride    = span{lo: 1, hi: MaxStride}
	spanSpeed     = span{lo: 0, hi: math.MaxInt64}
	spanMemoryMB  = span{lo: MinMemoryMB, hi: MaxMemoryMB, zeroOK: true}
	spanSYNRate   = span{lo: 1, hi: MaxSYNRate, zeroOK: true}
	spanSYNBurst  = span{lo: 1, hi: MaxSYNBurst, zeroOK: true}
	spanConns     = span{lo: 1, hi: MaxServiceConns, zeroOK: true}
	spanIdleS     = span{lo: 1, hi: int64(MaxIdleTimeout / time.Second), zeroOK: true}
	spanRate      = span{lo: 1, hi: MaxRatePerSource, zeroOK: true}

	// carrier_poll_ms: 0 = off, else a poll interval.
	spanCarrierPoll = span{lo: 0, hi: MaxCarrierPollMs}
)

// lacpMultiSpeedKeys are the accepted spellings of multi_speed: ours, the
// lagg(4) man page's and ifconfig(8)'s keyword.
var lacpMultiSpeedKeys = []string{"multi_speed", "multi-speed", "multi-linkspeed"}

var (
	topKeys      = []string{"control", "metrics", "limits", "lagg", "service", "route", "vlan"}
	controlKeys  = []string{"socket", "runtime_dir", "group"}
	metricsKeys  = []string{"listen"}
	limitsKeys   = []string{"memory_mb", "syn_rate", "syn_burst"}
	laggKeys     = []string{"name", "proto", "addresses", "mtu", "mac", "hash", "up_delay_ms", "down_delay_ms", "down", "failover", "lacp", "roundrobin", "port", "monitor", "announce_count", "announce_interval_ms"}
	failoverKeys = []string{"rx_all"}
	rrKeys       = []string{"stride"}
	lacpKeys     = append(slices.Clone(lacpMultiSpeedKeys), "max_ports", "rate", "mode", "system_priority", "key", "min_ports", "fallback", "select")
	portKeys     = []string{"name", "kind", "priority", "speed_mbps", "gso", "disabled", "carrier_poll_ms"}
	serviceKeys  = []string{"kind", "port", "lagg", "max_conns", "max_conns_per_source", "idle_timeout_s", "rate_per_source", "details"}
)

func (d *decoder) config(m map[string]any) *Config {
	c := Default()
	d.unknown("", m, topKeys)
	if t, ok := d.table(m, "", "control"); ok {
		d.unknown("control", t, controlKeys)
		d.str(t, "control", "socket", &c.Control.Socket)
		d.str(t, "control", "runtime_dir", &c.Control.RuntimeDir)
		d.str(t, "control", "group", &c.Control.Group)
	}
	if t, ok := d.table(m, "", "metrics"); ok {
		d.unknown("metrics", t, metricsKeys)
		d.str(t, "metrics", "listen", &c.Metrics.Listen)
	}
	if t, ok := d.table(m, "", "limits"); ok {
		d.unknown("limits", t, limitsKeys)
		setInt(d, t, "limits", "memory_mb", spanMemoryMB, &c.Limits.MemoryMB)
		setInt(d, t, "limits", "syn_rate", spanSYNRate, &c.Limits.SYNRate)
		setInt(d, t, "limits", "syn_burst", spanSYNBurst, &c.Limits.SYNBurst)
	}
	for i, t := range d.tables(m, "", "lagg") {
		c.Laggs = append(c.Laggs, d.lagg(indexPath("lagg", i), t))
	}
	for i, t := range d.tables(m, "", "service") {
		c.Services = append(c.Services, d.service(indexPath("service", i), t))
	}
	for i, t := range d.tables(m, "", "route") {
		c.Routes = append(c.Routes, d.route(indexPath("route", i), t))
	}
	for i, t := range d.tables(m, "", "vlan") {
		c.VLANs = append(c.VLANs, d.vlan(indexPath("vlan", i), t))
	}
	return c
}

func (d *decoder) lagg(p string, t map[string]any) Lagg {
	l := NewLagg("")
	d.unknown(p, t, laggKeys)
	d.required(t, p, "name")
	d.str(t, p, "name", &l.Name)
	d.str(t, p, "proto", &l.Proto)
	addrs, _ := d.strs(t, p, "addresses")
	for i, s := range addrs {
		if d.addressWord(&l.DHCP, &l.SLAAC, keyPath(p, "addresses"), i, s) { // dhcp.go
			continue
		}
		// A bad entry stays as an invalid Prefix so that later entries keep
		// their index; Validate's complaint about it is suppressed.
		pfx, err := netip.ParsePrefix(s)
		if err != nil && !d.reported(indexPath(keyPath(p, "addresses"), i)) {
			d.errorf(indexPath(keyPath(p, "addresses"), i), "%q is not an address/prefix-length (like 192.0.2.1/24 or 2001:db8::1/64)", s)
		}
		l.Addresses = append(l.Addresses, pfx)
	}
	setInt(d, t, p, "mtu", spanMTU, &l.MTU)
	var mac string
	if d.str(t, p, "mac", &mac) {
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			d.errorf(keyPath(p, "mac"), "%q is not a 48-bit MAC address (like 02:00:00:00:00:01)", mac)
		} else {
			l.MAC = hw
		}
	}
	if h, ok := d.strs(t, p, "hash"); ok {
		l.Hash = h // may be empty: Validate says so
	}
	var ms int64
	if setInt(d, t, p, "up_delay_ms", spanDelayMs, &ms) {
		l.UpDelay = time.Duration(ms) * time.Millisecond
	}
	if setInt(d, t, p, "down_delay_ms", spanDelayMs, &ms) {
		l.DownDelay = time.Duration(ms) * time.Millisecond
	}
	d.boolean(t, p, "down", &l.Down)
	d.announce(p, t, &l) // announce.go
	if ft, ok := d.table(t, p, "failover"); ok {
		fp := keyPath(p, "failover")
		d.unknown(fp, ft, failoverKeys)
		d.boolean(ft, fp, "rx_all", &l.Failover.RxAll)
	}
	if rt, ok := d.table(t, p, "roundrobin"); ok {
		rp := keyPath(p, "roundrobin")
		d.unknown(rp, rt, rrKeys)
		setInt(d, rt, rp, "stride", spanStride, &l.RoundRobin.Stride)
	}
	if lt, ok := d.table(t, p, "lacp"); ok {
		d.lacp(keyPath(p, "lacp"), lt, &l.LACP)
	}
	if mt, ok := d.table(t, p, "monitor"); ok {
		d.monitor(keyPath(p, "monitor"), mt, &l.Monitor) // monitor.go
	}
	for i, pt := range d.tables(t, p, "port") {
		l.Ports = append(l.Ports, d.port(indexPath(keyPath(p, "port"), i), pt))
	}
	return l
}

func (d *decoder) lacp(p string, t map[string]any, c *LACP) {
	d.unknown(p, t, lacpKeys)
	first := ""
	for _, k := range lacpMultiSpeedKeys {
		if _, ok := t[k]; !ok {
			continue
		}
		if first != "" {
			d.errorf(keyPath(p, k), "also given as %s; these are spellings of the same key, give only one", first)
			continue
		}
		first = k
		d.boolean(t, p, k, &c.MultiSpeed)
	}
	setInt(d, t, p, "max_ports", spanLACPPorts, &c.MaxPorts)
	d.str(t, p, "rate", &c.Rate)
	d.str(t, p, "mode", &c.Mode)
	setInt(d, t, p, "system_priority", spanSysPrio, &c.SystemPriority)
	setInt(d, t, p, "key", spanU16, &c.Key)
	setInt(d, t, p, "min_ports", spanLACPPorts, &c.MinPorts)
	d.boolean(t, p, "fallback", &c.Fallback)
	d.str(t, p, "select", &c.Select)
}

func (d *decoder) port(p string, t map[string]any) Port {
	pt := newPort("")
	d.unknown(p, t, portKeys)
	d.required(t, p, "name")
	d.str(t, p, "name", &pt.Name)
	d.str(t, p, "kind", &pt.Kind)
	setInt(d, t, p, "priority", spanU16, &pt.Priority)
	setInt(d, t, p, "speed_mbps", spanSpeed, &pt.SpeedMbps)
	gso := !pt.DisableGSO
	d.boolean(t, p, "gso", &gso)
	pt.DisableGSO = !gso
	d.boolean(t, p, "disabled", &pt.Disabled)
	if setInt(d, t, p, "carrier_poll_ms", spanCarrierPoll, &pt.CarrierPollMs) && pt.CarrierPollMs == 0 {
		pt.CarrierPollMs = CarrierPollOff
	}
	return pt
}

func (d *decoder) service(p string, t map[string]any) Service {
	var s Service
	d.unknown(p, t, serviceKeys)
	d.required(t, p, "kind")
	d.required(t, p, "port")
	d.str(t, p, "kind", &s.Kind)
	setInt(d, t, p, "port", spanPort, &s.Port)
	d.str(t, p, "lagg", &s.Lagg)
	setInt(d, t, p, "max_conns", spanConns, &s.MaxConns)
	setInt(d, t, p, "max_conns_per_source", spanConns, &s.MaxConnsPerSource)
	var idle int64
	if setInt(d, t, p, "idle_timeout_s", spanIdleS, &idle) {
		s.IdleTimeout = time.Duration(idle) * time.Second
	}
	setInt(d, t, p, "rate_per_source", spanRate, &s.RatePerSource)
	d.boolean(t, p, "details", &s.Details)
	return s
}

// unknown reports keys of t that are not in known, in sorted order, with a
// hint when the key is a near spelling of a known one.
func (d *decoder) unknown(p string, t map[string]any, known []string) {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if slices.Contains(known, k) {
			continue
		}
		hint := ""
		for _, w := range known {
			if fold(w) == fold(k) {
				hint = fmt.Sprintf(" (did you mean %s?)", w)
				break
			}
		}
		d.errorf(keyPath(p, k), "unknown key%s", hint)
	}
}

// fold maps "Max-Ports", "max ports", "maxports" and "max_ports" alike.
func fold(s string) string {
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
}

func (d *decoder) required(t map[string]any, p, k string) {
	if _, ok := t[k]; !ok {
		d.errorf(keyPath(p, k), "required key is missing")
	}
}

func (d *decoder) wrongType(key string, v any, want string) {
	d.errorf(key, "must be %s, not %s", want, typeName(v))
}

// table returns t[k] as a table; ok is false if absent or mistyped.
func (d *decoder) table(t map[string]any, p, k string) (map[string]any, bool) {
	v, ok := t[k]
	if !ok {
		return nil, false
	}
	m, ok := v.(map[string]any)
	if !ok {
		d.wrongType(keyPath(p, k), v, fmt.Sprintf("a table ([%s])", k))
	}
	return m, ok
}

// tables returns t[k] as an array of tables, written either as [[k]]
// sections or as an inline array of inline tables.
func (d *decoder) tables(t map[string]any, p, k string) []map[string]any {
	v, ok := t[k]
	if !ok {
		return nil
	}
	key := keyPath(p, k)
	switch v := v.(type) {
	case []map[string]any:
		return v
	case []any:
		// All or nothing, so that indexes in messages match the file.
		out := make([]map[string]any, 0, len(v))
		for i, e := range v {
			if m, ok := e.(map[string]any); ok {
				out = append(out, m)
			} else {
				d.wrongType(indexPath(key, i), e, "a table")
			}
		}
		if len(out) < len(v) {
			return nil
		}
		return out
	}
	d.wrongType(key, v, fmt.Sprintf("an array of tables ([[%s]])", k))
	return nil
}

// str stores t[k] in dst if it is a string and reports whether it did.
func (d *decoder) str(t map[string]any, p, k string, dst *string) bool {
	v, ok := t[k]
	if !ok {
		return false
	}
	s, ok := v.(string)
	if !ok {
		d.wrongType(keyPath(p, k), v, "a string")
		return false
	}
	*dst = s
	return true
}

// strs returns t[k] as a list of strings and whether it is present and an
// array. Elements that are not strings become "" so that indexes match.
func (d *decoder) strs(t map[string]any, p, k string) ([]string, bool) {
	v, ok := t[k]
	if !ok {
		return nil, false
	}
	key := keyPath(p, k)
	a, ok := v.([]any)
	if !ok {
		d.wrongType(key, v, "an array of strings")
		return nil, false
	}
	out := make([]string, len(a))
	for i, e := range a {
		if s, ok := e.(string); ok {
			out[i] = s
		} else {
			d.wrongType(indexPath(key, i), e, "a string")
		}
	}
	return out, true
}

func (d *decoder) boolean(t map[string]any, p, k string, dst *bool) {
	v, ok := t[k]
	if !ok {
		return
	}
	b, ok := v.(bool)
	if !ok {
		d.wrongType(keyPath(p, k), v, "true or false")
		return
	}
	*dst = b
}

// setInt stores t[k] in dst if it is an integer within s and reports
// whether it did. s must fit T.
func setInt[T ~int | ~int64 | ~uint16 | ~uint32 | ~uint64](d *decoder, t map[string]any, p, k string, s span, dst *T) bool {
	v, ok := t[k]
	if !ok {
		return false
	}
	key := keyPath(p, k)
	n, ok := v.(int64)
	if !ok {
		d.wrongType(key, v, "an integer")
		return false
	}
	if msg := s.check(n); msg != "" {
		d.errorf(key, "%s", msg)
		return false
	}
	*dst = T(n)
	return true
}

func typeName(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the float %v", v)
	case bool:
		return fmt.Sprintf("%t", v)
	case []any:
		return "an array"
	case []map[string]any:
		return "an array of tables"
	case map[string]any:
		return "a table"
	}
	return "a date/time" // the only other TOML value kind
}
