package lagg

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Link monitors: failure detection beyond carrier, after Linux bonding's
// ARP monitor (arp_ip_target, arp_validate, arp_all_targets, ns_ip6_target,
// arp_missed_max) and teamd's arp_ping and nsna_ping link watches.
//
// Every interval the lagg probes each target through each port with link
// up — through that port directly, whatever the distribution — and a port
// whose probes go unanswered for MissedMax intervals in a row is
// monitor-down: it counts as link-down for the protocol (failover moves,
// loadbalance, roundrobin and broadcast leave it out, lacp stops
// aggregating it) until a probe is answered again, after the up delay.
//
// # Replies must come back on the probing port
//
// Every port carries the lagg's MAC, so a switch delivers a reply to the
// lagg's MAC wherever it last learned it; a reply to port B's probe may
// well come in on port A and prove nothing about B. So each port probes
// with its own original MAC (the lagg's only for the port whose MAC the
// lagg took, or ports without a usable one):
//
//   - ARP: an RFC 5227 probe, Ethernet source and sender hardware address
//     the port's MAC, sender IP 0.0.0.0. Targets answer unicast to the
//     port's MAC and cache nothing, so the target's ARP entry for the lagg's
//     address is never pointed at a port (the lagg's addresses are not used
//     as sender for that reason).
//   - NS: from the port's own link-local address (fe80::/64 with the
//     modified EUI-64 of the port's MAC) with the port's MAC as source
//     link-layer option, to the target's solicited-node group; the target
//     answers with a unicast NA to that link-local at the port's MAC. Its
//     neighbour entry is for the port's link-local, not the lagg's
//     addresses.
//
// The switch learns each port's MAC on that port alone, so a reply reaches
// the port that asked, and a reply counts only there: a port must both
// send and receive to stay up. Two exceptions, where the switch decides:
// the port probing with the lagg's MAC (the switch learns that on
// whichever port sent last), and every port under lacp (the partner's
// bond picks the member for each frame, replies included). Their replies
// count on any port and prove the probe's way out (monSnap.byDst).
//
// Ports deliver frames to their own MAC (the AF_PACKET and TAP ports accept
// it besides the lagg's); the lagg's receive path takes the replies
// (monitorInput) before anything else and drops, counted as
// DropForeignMAC, every other frame to a port's own MAC.
//
// # Validate and require
//
// Validate says which ports need replies to their own probes, as Linux's
// arp_validate says which slaves validate their ARP traffic:
// "all" (the default) every port; "active" the ports that transmit now;
// "backup" the others. A port that is not validated is alive while
// anything at all arrives on it (Linux's last_rx) — cheaper for the
// target, weaker: broadcast from elsewhere keeps such a port up.
//
// Require is Linux's arp_all_targets: "any" (the default) one answered
// target per interval keeps a port up; "all" needs every target, so the
// loss of the path to one target takes the port down.
//
// The monitor runs on the lagg's clock (AfterFunc, no goroutine of its
// own): one callback per interval under Lagg.mu judges the interval that
// ended and sends the next probes. The receive path only sets atomic bits
// per port slot; a port's verdict is another input of its active state
// (settleLocked), beside its link.

// MonitorValidate says which ports need replies to their own probes.
type MonitorValidate string

// MonitorRequire says how many targets must answer.
type MonitorRequire string

// Validate and Require values.
const (
	ValidateAll    MonitorValidate = "all"
	ValidateActive MonitorValidate = "active"
	ValidateBackup MonitorValidate = "backup"
	RequireAny     MonitorRequire  = "any"
	RequireAll     MonitorRequire  = "all"
)

// Monitor limits and defaults.
const (
	MonitorMaxTargets       = 16 // per family, as Linux's BOND_MAX_ARP_TARGETS
	MonitorMinInterval      = 10 * time.Millisecond
	MonitorMaxInterval      = 60 * time.Second
	DefaultMonitorInterval  = time.Second
	DefaultMonitorMissedMax = 2 // Linux's arp_missed_max
)

// MonitorOptions are a lagg's link monitor settings. With no target the
// monitor is off.
type MonitorOptions struct {
	ARPTargets []netip.Addr // IPv4 unicast
	NSTargets  []netip.Addr // IPv6 unicast
	Interval   time.Duration
	MissedMax  int // intervals without a valid reply before a port is down
	Validate   MonitorValidate
	Require    MonitorRequire
}

// Enabled reports whether there is anything to probe; nil is off.
func (m *MonitorOptions) Enabled() bool { return m != nil && len(m.ARPTargets)+len(m.NSTargets) > 0 }

// normalized returns a copy with the defaults filled in, or nil when off,
// so every "off" compares equal.
func (m *MonitorOptions) normalized() *MonitorOptions {
	if !m.Enabled() {
		return nil
	}
	c := *m
	c.ARPTargets, c.NSTargets = slices.Clone(m.ARPTargets), slices.Clone(m.NSTargets)
	m = &c
	if m.Interval == 0 {
		m.Interval = DefaultMonitorInterval
	}
	if m.MissedMax == 0 {
		m.MissedMax = DefaultMonitorMissedMax
	}
	if m.Validate == "" {
		m.Validate = ValidateAll
	}
	if m.Require == "" {
		m.Require = RequireAny
	}
	return m
}

// Equal reports whether m and o are the same settings.
func (m *MonitorOptions) Equal(o *MonitorOptions) bool {
	if !m.Enabled() || !o.Enabled() {
		return m.Enabled() == o.Enabled()
	}
	return slices.Equal(m.ARPTargets, o.ARPTargets) && slices.Equal(m.NSTargets, o.NSTargets) &&
		m.Interval == o.Interval && m.MissedMax == o.MissedMax && m.Validate == o.Validate && m.Require == o.Require
}

// String is the settings as the lagg's status line shows them:
// "arp 10.0.0.1 ns fd00::1 interval 100ms missed 3 validate all require any".
func (m *MonitorOptions) String() string {
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
	fmt.Fprintf(&b, "interval %v missed %d validate %s require %s", m.Interval, m.MissedMax, m.Validate, m.Require)
	return b.String()
}

func (m *MonitorOptions) validate() error {
	if !m.Enabled() {
		return nil
	}
	var errs []error
	check := func(family string, addrs []netip.Addr, ok func(netip.Addr) bool) {
		if len(addrs) > MonitorMaxTargets {
			errs = append(errs, fmt.Errorf("monitor: %d %s targets, at most %d", len(addrs), family, MonitorMaxTargets))
		}
		for i, a := range addrs {
			switch {
			case !ok(a):
				errs = append(errs, fmt.Errorf("monitor: %s target %s is not a unicast %s address", family, a, family))
			case slices.Contains(addrs[:i], a):
				errs = append(errs, fmt.Errorf("monitor: %s target %s given twice", family, a))
			}
		}
	}
	check("arp", m.ARPTargets, func(a netip.Addr) bool {
		return a.Is4() && !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
	})
	check("ns", m.NSTargets, func(a netip.Addr) bool {
		return a.Is6() && !a.Is4In6() && !a.IsUnspecified() && !a.IsMulticast() && a.Zone() == ""
	})
	if m.Interval < MonitorMinInterval || m.Interval > MonitorMaxInterval {
		errs = append(errs, fmt.Errorf("monitor: interval %v out of range %v..%v", m.Interval, MonitorMinInterval, MonitorMaxInterval))
	}
	if m.MissedMax < 1 || m.MissedMax > 255 {
		errs = append(errs, fmt.Errorf("monitor: missed_max %d out of range 1..255", m.MissedMax))
	}
	switch m.Validate {
	case ValidateAll, ValidateActive, ValidateBackup:
	default:
		errs = append(errs, fmt.Errorf("monitor: validate %q unknown (have all, active, backup)", m.Validate))
	}
	switch m.Require {
	case RequireAny, RequireAll:
	default:
		errs = append(errs, fmt.Errorf("monitor: require %q unknown (have any, all)", m.Require))
	}
	return errors.Join(errs...)
}

// PortMonitorStatus is a port's link monitor state.
type PortMonitorStatus struct {
	Up       bool
	Reason   string // why it is down, e.g. "arp 10.0.0.1 unanswered 3×"
	Missed   int    // intervals in a row without a valid reply
	Failures uint64 // times the monitor took the port down
	Probes   uint64 // probes sent
	Replies  uint64 // valid replies received
}
