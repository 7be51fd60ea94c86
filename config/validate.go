package config

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
)

var (
	hashLayers   = []string{"l2", "l3", "l4"}
	lacpRates    = []string{"fast", "slow"}
	lacpModes    = []string{"active", "passive"}
	lacpSelects  = []string{"stable", "bandwidth", "count"}
	serviceKinds = []string{"tcp-echo", "udp-echo", "tcp-discard", "http-status", "iperf3"}
)

// transport returns the protocol a service kind listens on, or "".
func transport(kind string) string {
	switch kind {
	case "tcp-echo", "tcp-discard", "http-status", "iperf3":
		return "tcp"
	case "udp-echo":
		return "udp"
	}
	return ""
}

// maxSocketPath is the longest path that fits sockaddr_un.sun_path with its NUL.
const maxSocketPath = 107

// Validate checks a Config built in code. The error joins one *Error per
// problem; keys are named by their TOML path since there is no file.
func (c *Config) Validate() error {
	if c == nil {
		return &Error{Msg: "config is nil"}
	}
	return joinErrors(c.validate())
}

type checker struct{ errs []*Error }

func (v *checker) errorf(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// oneOf reports s unless it is in set.
func (v *checker) oneOf(key, s string, set []string) {
	if !slices.Contains(set, s) {
		v.errorf(key, "%q is not one of %s", s, strings.Join(set, ", "))
	}
}

func (v *checker) inSpan(key string, n int64, s span) {
	if msg := s.check(n); msg != "" {
		v.errorf(key, "%s", msg)
	}
}

func (c *Config) validate() []*Error {
	v := &checker{}
	v.control(c.Control)
	v.metrics(c.Metrics)
	v.inSpan("limits.memory_mb", int64(c.Limits.MemoryMB), spanMemoryMB)
	v.inSpan("limits.syn_rate", int64(c.Limits.SYNRate), spanSYNRate)
	v.inSpan("limits.syn_burst", int64(c.Limits.SYNBurst), spanSYNBurst)
	owner := map[string]string{} // port name → lagg that has it
	for i := range c.Laggs {
		p := indexPath("lagg", i)
		l := &c.Laggs[i]
		v.lagg(p, l, owner)
		for j := range i {
			if l.Name != "" && c.Laggs[j].Name == l.Name {
				v.errorf(keyPath(p, "name"), "lagg %q is already defined by lagg[%d]", l.Name, j)
				break
			}
		}
	}
	v.services(c)
	v.routes(c)
	v.vlans(c) // vlan.go
	return v.errs
}

func (v *checker) control(c Control) {
	const key = "control.socket"
	switch {
	case c.Socket == "":
		v.errorf(key, "must not be empty")
	case len(c.Socket) > maxSocketPath:
		v.errorf(key, "path is %d bytes; a unix socket path takes at most %d", len(c.Socket), maxSocketPath)
	case !printable(c.Socket):
		v.errorf(key, "%q has control characters or invalid UTF-8", c.Socket)
	}
	const dirKey = "control.runtime_dir"
	switch {
	case c.RuntimeDir == "":
	case !strings.HasPrefix(c.RuntimeDir, "/"):
		v.errorf(dirKey, "%q is not an absolute path", c.RuntimeDir)
	case !printable(c.RuntimeDir):
		v.errorf(dirKey, "%q has control characters or invalid UTF-8", c.RuntimeDir)
	}
	v.controlGroup(c.Group) // port_admin.go
}

func (v *checker) metrics(m Metrics) {
	const key = "metrics.listen"
	if m.Listen == "" {
		return
	}
	host, port, err := net.SplitHostPort(m.Listen)
	if err != nil {
		v.errorf(key, "%q is not host:port (like 127.0.0.1:9100 or [::1]:9100)", m.Listen)
		return
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		v.errorf(key, "%q: port must be a number 1..65535", m.Listen)
	}
	if !printable(host) || strings.ContainsFunc(host, unicode.IsSpace) {
		v.errorf(key, "%q: bad host", m.Listen)
	}
}

func (v *checker) lagg(p string, l *Lagg, owner map[string]string) {
	if !validLaggName(l.Name) {
		v.errorf(keyPath(p, "name"), "%q is not a valid lagg name: want a lowercase letter, then up to 14 of a-z 0-9 _ . -", l.Name)
	}
	v.oneOf(keyPath(p, "proto"), l.Proto, lagg.ProtocolNames())
	v.addresses(keyPath(p, "addresses"), l.Addresses)
	v.inSpan(keyPath(p, "mtu"), int64(l.MTU), spanMTU)
	if l.MAC != nil {
		mp := keyPath(p, "mac")
		switch {
		case len(l.MAC) != 6:
			v.errorf(mp, "%s is not a 48-bit MAC address", l.MAC)
		case l.MAC[0]&1 != 0:
			v.errorf(mp, "%s is a group address; want unicast (lowest bit of the first byte clear)", l.MAC)
		case slices.Equal(l.MAC, make(net.HardwareAddr, 6)):
			v.errorf(mp, "%s: the all-zero address is not allowed", l.MAC)
		}
	}
	hp := keyPath(p, "hash")
	if len(l.Hash) == 0 {
		v.errorf(hp, "must list at least one of %s (leave it out for all three)", strings.Join(hashLayers, ", "))
	}
	for i, h := range l.Hash {
		v.oneOf(indexPath(hp, i), h, hashLayers)
		if j := slices.Index(l.Hash[:i], h); j >= 0 {
			v.errorf(indexPath(hp, i), "%q is already given by hash[%d]", h, j)
		}
	}
	v.delay(keyPath(p, "up_delay_ms"), l.UpDelay)
	v.delay(keyPath(p, "down_delay_ms"), l.DownDelay)
	v.lacp(keyPath(p, "lacp"), &l.LACP)
	v.inSpan(keyPath(keyPath(p, "roundrobin"), "stride"), int64(l.RoundRobin.Stride), spanStride)
	v.monitor(keyPath(p, "monitor"), &l.Monitor) // monitor.go
	v.announce(p, l)                             // announce.go
	v.ports(p, l, owner)
}

// addresses checks an interface's address list (a lagg's or a VLAN's).
func (v *checker) addresses(key string, addrs []netip.Prefix) {
	seen := map[netip.Addr]int{}
	for i, a := range addrs {
		ap := indexPath(key, i)
		addr := a.Addr()
		switch {
		case !a.IsValid():
			v.errorf(ap, "invalid prefix")
			continue
		case addr.Zone() != "":
			v.errorf(ap, "%s: zones are not allowed", a)
		case addr.Is4In6():
			v.errorf(ap, "%s is an IPv4-mapped IPv6 address; write it as IPv4", a)
		case addr.IsUnspecified() || addr.IsMulticast():
			v.errorf(ap, "%s is not a unicast address", a)
		}
		if j, dup := seen[addr]; dup {
			v.errorf(ap, "address %s is already given by addresses[%d]", addr, j)
		} else {
			seen[addr] = i
		}
	}
}

func (v *checker) delay(key string, d time.Duration) {
	if d%time.Millisecond != 0 {
		v.errorf(key, "%v is not a whole number of milliseconds", d)
		return
	}
	v.inSpan(key, d.Milliseconds(), spanDelayMs)
}

func (v *checker) lacp(p string, c *LACP) {
	v.inSpan(keyPath(p, "max_ports"), int64(c.MaxPorts), spanLACPPorts)
	v.inSpan(keyPath(p, "min_ports"), int64(c.MinPorts), spanLACPPorts)
	if spanLACPPorts.contains(int64(c.MaxPorts)) && c.MinPorts > c.MaxPorts {
		v.errorf(keyPath(p, "min_ports"), "%d is more than max_ports (%d)", c.MinPorts, c.MaxPorts)
	}
	v.oneOf(keyPath(p, "rate"), c.Rate, lacpRates)
	v.oneOf(keyPath(p, "mode"), c.Mode, lacpModes)
	if c.Select != "" { // "": the default, stable
		v.oneOf(keyPath(p, "select"), c.Select, lacpSelects)
	}
	v.inSpan(keyPath(p, "system_priority"), int64(c.SystemPriority), spanSysPrio)
}

func (v *checker) ports(p string, l *Lagg, owner map[string]string) {
	pp := keyPath(p, "port")
	if len(l.Ports) > MaxPorts {
		v.errorf(indexPath(pp, MaxPorts), "%d ports; a lagg takes at most %d", len(l.Ports), MaxPorts)
	}
	for i, pt := range l.Ports {
		ip := indexPath(pp, i)
		np := keyPath(ip, "name")
		if msg := checkIfName(pt.Name); msg != "" {
			v.errorf(np, "%q %s", pt.Name, msg)
		} else if j := slices.IndexFunc(l.Ports[:i], func(o Port) bool { return o.Name == pt.Name }); j >= 0 {
			v.errorf(np, "%q is already a port of this lagg (port[%d])", pt.Name, j)
		} else if other, dup := owner[pt.Name]; dup {
			v.errorf(np, "%q is a port in two laggs: %s and %s", pt.Name, other, l.Name)
		} else {
			owner[pt.Name] = l.Name
		}
		v.oneOf(keyPath(ip, "kind"), pt.Kind, linkep.Kinds())
		if pt.CarrierPollMs != CarrierPollOff {
			v.inSpan(keyPath(ip, "carrier_poll_ms"), int64(pt.CarrierPollMs), spanCarrierPoll)
		}
	}
}

func (v *checker) services(c *Config) {
	for i, s := range c.Services {
		p := indexPath("service", i)
		v.oneOf(keyPath(p, "kind"), s.Kind, serviceKinds)
		v.inSpan(keyPath(p, "port"), int64(s.Port), spanPort)
		if s.Lagg != "" && !c.HasInterface(s.Lagg) {
			v.errorf(keyPath(p, "lagg"), "no %s is named %q", ifaceKind(s.Lagg), s.Lagg)
		}
		v.serviceLimits(p, s)
		tr := transport(s.Kind)
		if tr == "" || s.Port == 0 {
			continue
		}
		for j, o := range c.Services[:i] {
			if o == s {
				v.errorf(keyPath(p, "port"), "duplicate of service[%d] (%s on port %d)", j, s.Kind, s.Port)
				break
			}
			// Services scoped to different laggs listen on different
			// addresses; an unscoped one listens on all of them.
			if transport(o.Kind) == tr && o.Port == s.Port && (o.Lagg == "" || s.Lagg == "" || o.Lagg == s.Lagg) {
				v.errorf(keyPath(p, "port"), "%s port %d is already used by service[%d] (%s)", tr, s.Port, j, o.Kind)
				break
			}
		}
	}
}

// serviceLimits checks a service's limits and that each applies to its
// kind.
func (v *checker) serviceLimits(p string, s Service) {
	tcp := transport(s.Kind) == "tcp"
	only := func(key string, set, applies bool, kinds string) bool {
		if set && !applies && slices.Contains(serviceKinds, s.Kind) {
			v.errorf(keyPath(p, key), "applies to %s only, not %s", kinds, s.Kind)
			return false
		}
		return true
	}
	if only("max_conns", s.MaxConns != 0, tcp, "TCP services (tcp-echo, tcp-discard, http-status)") {
		v.inSpan(keyPath(p, "max_conns"), int64(s.MaxConns), spanConns)
	}
	if only("max_conns_per_source", s.MaxConnsPerSource != 0, tcp, "TCP services (tcp-echo, tcp-discard, http-status)") {
		v.inSpan(keyPath(p, "max_conns_per_source"), int64(s.MaxConnsPerSource), spanConns)
		if s.MaxConns > 0 && s.MaxConnsPerSource > s.MaxConns {
			v.errorf(keyPath(p, "max_conns_per_source"), "%d is more than max_conns (%d)", s.MaxConnsPerSource, s.MaxConns)
		}
	}
	if only("idle_timeout_s", s.IdleTimeout != 0, tcp, "TCP services (tcp-echo, tcp-discard, http-status)") {
		if s.IdleTimeout%time.Second != 0 {
			v.errorf(keyPath(p, "idle_timeout_s"), "%v is not a whole number of seconds", s.IdleTimeout)
		} else {
			v.inSpan(keyPath(p, "idle_timeout_s"), int64(s.IdleTimeout/time.Second), spanIdleS)
		}
	}
	if only("rate_per_source", s.RatePerSource != 0, s.Kind == "udp-echo", "udp-echo") {
		v.inSpan(keyPath(p, "rate_per_source"), int64(s.RatePerSource), spanRate)
	}
	only("details", s.Details, s.Kind == "http-status", "http-status")
}

func validLaggName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// checkIfName applies Linux's dev_valid_name rules (1..15 bytes; not "."
// or ".."; no '/', ':' or whitespace) plus printable UTF-8, since the name
// must round-trip through TOML. It returns "" if name is fine.
func checkIfName(name string) string {
	switch {
	case name == "":
		return "is empty; an interface name has 1..15 bytes"
	case len(name) > 15:
		return fmt.Sprintf("is %d bytes; an interface name has at most 15", len(name))
	case name == "." || name == "..":
		return "is not a valid interface name"
	case strings.ContainsAny(name, "/:"):
		return "must not contain '/' or ':'"
	case strings.ContainsFunc(name, unicode.IsSpace):
		return "must not contain whitespace"
	case !printable(name):
		return "has control characters or invalid UTF-8"
	}
	return ""
}

func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}
