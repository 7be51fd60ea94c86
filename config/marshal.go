package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Marshal encodes c as TOML with canonical key names, leaving out values
// that equal their defaults. It refuses a config that fails Validate, so
// that Parse always reads the output back to a Config equal to c (nil and
// empty lists are not told apart).
func Marshal(c *Config) ([]byte, error) {
	if c == nil {
		return nil, errors.New("config: Marshal of nil Config")
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	w := &writer{}
	if c.Control.Socket != DefaultSocket || c.Control.RuntimeDir != "" || c.Control.Group != "" {
		w.table("[control]")
		if c.Control.Socket != DefaultSocket {
			w.str("socket", c.Control.Socket)
		}
		if c.Control.RuntimeDir != "" {
			w.str("runtime_dir", c.Control.RuntimeDir)
		}
		if c.Control.Group != "" {
			w.str("group", c.Control.Group)
		}
	}
	if c.Metrics.Listen != "" {
		w.table("[metrics]")
		w.str("listen", c.Metrics.Listen)
	}
	if c.Limits != (Limits{}) {
		w.table("[limits]")
		if c.Limits.MemoryMB != 0 {
			w.int("memory_mb", int64(c.Limits.MemoryMB))
		}
		if c.Limits.SYNRate != 0 {
			w.int("syn_rate", int64(c.Limits.SYNRate))
		}
		if c.Limits.SYNBurst != 0 {
			w.int("syn_burst", int64(c.Limits.SYNBurst))
		}
	}
	for i := range c.Laggs {
		w.lagg(&c.Laggs[i])
	}
	for _, s := range c.Services {
		w.table("[[service]]")
		w.str("kind", s.Kind)
		w.int("port", int64(s.Port))
		if s.Lagg != "" {
			w.str("lagg", s.Lagg)
		}
		if s.MaxConns != 0 {
			w.int("max_conns", int64(s.MaxConns))
		}
		if s.MaxConnsPerSource != 0 {
			w.int("max_conns_per_source", int64(s.MaxConnsPerSource))
		}
		if s.IdleTimeout != 0 {
			w.int("idle_timeout_s", int64(s.IdleTimeout/time.Second))
		}
		if s.RatePerSource != 0 {
			w.int("rate_per_source", int64(s.RatePerSource))
		}
		if s.Details {
			w.bool("details", true)
		}
	}
	for _, r := range c.Routes {
		w.route(r)
	}
	for i := range c.VLANs {
		w.vlan(&c.VLANs[i]) // vlan.go
	}
	return []byte(w.b.String()), nil
}

type writer struct{ b strings.Builder }

// table starts a section, separated from the previous one by a blank line.
func (w *writer) table(header string) {
	if w.b.Len() > 0 {
		w.b.WriteByte('\n')
	}
	w.b.WriteString(header + "\n")
}

func (w *writer) str(k, v string)       { fmt.Fprintf(&w.b, "%s = %s\n", k, quote(v)) }
func (w *writer) int(k string, v int64) { fmt.Fprintf(&w.b, "%s = %d\n", k, v) }
func (w *writer) bool(k string, v bool) { fmt.Fprintf(&w.b, "%s = %t\n", k, v) }

func (w *writer) strs(k string, vs []string) {
	q := make([]string, len(vs))
	for i, v := range vs {
		q[i] = quote(v)
	}
	fmt.Fprintf(&w.b, "%s = [%s]\n", k, strings.Join(q, ", "))
}

func (w *writer) lagg(l *Lagg) {
	def := NewLagg(l.Name)
	w.table("[[lagg]]")
	w.str("name", l.Name)
	if l.Proto != def.Proto {
		w.str("proto", l.Proto)
	}
	if a := addressWords(l.DHCP, l.Addresses, l.SLAAC); len(a) > 0 { // dhcp.go
		w.strs("addresses", a)
	}
	if l.MTU != 0 {
		w.int("mtu", int64(l.MTU))
	}
	if l.MAC != nil {
		w.str("mac", l.MAC.String())
	}
	if !slices.Equal(l.Hash, def.Hash) {
		w.strs("hash", l.Hash)
	}
	if l.UpDelay != 0 {
		w.int("up_delay_ms", int64(l.UpDelay/time.Millisecond))
	}
	if l.DownDelay != 0 {
		w.int("down_delay_ms", int64(l.DownDelay/time.Millisecond))
	}
	if l.Down {
		w.bool("down", true)
	}
	w.announce(l) // announce.go: before the lagg's sub-tables
	if l.Failover != def.Failover {
		w.table("[lagg.failover]")
		w.bool("rx_all", l.Failover.RxAll)
	}
	if l.RoundRobin != def.RoundRobin {
		w.table("[lagg.roundrobin]")
		w.int("stride", int64(l.RoundRobin.Stride))
	}
	if l.LACP != def.LACP {
		w.table("[lagg.lacp]")
		w.lacp(l.LACP, def.LACP)
	}
	w.monitor(&l.Monitor) // monitor.go
	for _, p := range l.Ports {
		w.table("[[lagg.port]]")
		w.str("name", p.Name)
		if p.Kind != "afpacket" {
			w.str("kind", p.Kind)
		}
		if p.Priority != DefaultPriority {
			w.int("priority", int64(p.Priority))
		}
		if p.SpeedMbps != 0 {
			fmt.Fprintf(&w.b, "speed_mbps = %d\n", p.SpeedMbps)
		}
		if p.DisableGSO {
			w.bool("gso", false)
		}
		if p.Disabled {
			w.bool("disabled", true)
		}
		if p.CarrierPollMs != 0 {
			w.int("carrier_poll_ms", int64(max(p.CarrierPollMs, 0)))
		}
	}
}

func (w *writer) lacp(c, def LACP) {
	if c.MultiSpeed != def.MultiSpeed {
		w.bool("multi_speed", c.MultiSpeed)
	}
	if c.MaxPorts != def.MaxPorts {
		w.int("max_ports", int64(c.MaxPorts))
	}
	if c.Rate != def.Rate {
		w.str("rate", c.Rate)
	}
	if c.Mode != def.Mode {
		w.str("mode", c.Mode)
	}
	if c.SystemPriority != def.SystemPriority {
		w.int("system_priority", int64(c.SystemPriority))
	}
	if c.Key != def.Key {
		w.int("key", int64(c.Key))
	}
	if c.MinPorts != def.MinPorts {
		w.int("min_ports", int64(c.MinPorts))
	}
	if c.Fallback != def.Fallback {
		w.bool("fallback", c.Fallback)
	}
	if c.Select != def.Select {
		w.str("select", c.Select)
	}
}

// quote returns s as a TOML basic string. Validate has already ensured s
// is valid UTF-8; control characters get \u escapes.
func quote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
