package lagg

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// Config is the desired state of a lagg's settings (its ports come and go
// with AddPort and RemovePort). Apply moves a running lagg to it.
type Config struct {
	Proto Proto             // "" is ProtoNone
	MTU   uint32            // 0: derived, the first port's MTU (else 1500)
	MAC   tcpip.LinkAddress // "": derived, the first port's MAC (else a random local one)
	Hash  HashLayers        // 0: all layers
	// RxAll makes failover receive on every active port, not only on the
	// transmitting one. Kept under any protocol; failover uses it.
	RxAll     bool
	UpDelay   time.Duration // a port's link must stay up this long before use
	DownDelay time.Duration // and down this long before it is dropped
	LACP      LACPOptions
	// RoundRobin is roundrobin's setting.
	RoundRobin RoundRobinOptions
	// Monitor is the link monitor (monitor.go); nil or no target: off. A
	// pointer keeps Config comparable; Apply keeps a copy.
	Monitor *MonitorOptions
	// AnnounceCount is how many times each trigger (failover, new MAC, link
	// up) announces the lagg's addresses, AnnounceInterval apart: Linux
	// bonding's num_grat_arp and peer_notif_delay. 0: the defaults
	// (announce.go).
	AnnounceCount    int
	AnnounceInterval time.Duration
}

// RoundRobinOptions are the roundrobin protocol's settings.
type RoundRobinOptions struct {
	// Stride is how many consecutive frames go to one port before the next
	// (FreeBSD's rr_limit); 0 or 1 is one frame each.
	Stride int
}

// DefaultConfig returns lagg(4)'s defaults.
func DefaultConfig() Config {
	return Config{Proto: ProtoNone, RxAll: true, Hash: HashAll, LACP: DefaultLACPOptions()}
}

// normalized fills zero values with their meaning, so equal meanings
// compare equal.
func (c Config) normalized() Config {
	if c.Proto == "" {
		c.Proto = ProtoNone
	}
	if c.Hash == 0 {
		c.Hash = HashAll
	}
	if c.LACP == (LACPOptions{}) {
		c.LACP = DefaultLACPOptions()
	}
	if c.RoundRobin.Stride == 0 {
		c.RoundRobin.Stride = 1
	}
	c.Monitor = c.Monitor.normalized()
	c.normalizeAnnounce()
	return c
}

func (c *Config) validate() error {
	var errs []error
	if _, err := lookupProtocol(c.Proto); err != nil {
		errs = append(errs, err)
	}
	if c.MAC != "" {
		if err := validMAC(c.MAC); err != nil {
			errs = append(errs, err)
		}
	}
	if c.MTU != 0 && (c.MTU < header.IPv4MinimumMTU || c.MTU > 65535) {
		errs = append(errs, fmt.Errorf("MTU %d out of range %d..65535", c.MTU, header.IPv4MinimumMTU))
	}
	if c.Hash&^HashAll != 0 {
		errs = append(errs, fmt.Errorf("hash layers %#x unknown", uint8(c.Hash)))
	}
	if c.UpDelay < 0 || c.DownDelay < 0 {
		errs = append(errs, errors.New("up and down delays must not be negative"))
	}
	if err := c.LACP.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.RoundRobin.Stride < 1 || c.RoundRobin.Stride > 65535 {
		errs = append(errs, fmt.Errorf("roundrobin stride %d out of range 1..65535", c.RoundRobin.Stride))
	}
	if err := c.Monitor.validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.validateAnnounce(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// diff names the settings that differ between c and o, for logs and events.
func (c Config) diff(o Config) []string {
	var d []string
	add := func(changed bool, what string) {
		if changed {
			d = append(d, what)
		}
	}
	add(c.Proto != o.Proto, "proto")
	add(c.MTU != o.MTU, "mtu")
	add(c.MAC != o.MAC, "mac")
	add(c.Hash != o.Hash, "hash")
	add(c.RxAll != o.RxAll, "rx-all")
	add(c.UpDelay != o.UpDelay || c.DownDelay != o.DownDelay, "delays")
	add(c.LACP != o.LACP, "lacp")
	add(c.RoundRobin != o.RoundRobin, "roundrobin")
	add(!c.Monitor.Equal(o.Monitor), "monitor")
	add(c.AnnounceCount != o.AnnounceCount || c.AnnounceInterval != o.AnnounceInterval, "announce")
	return d
}

// Config returns the lagg's settings as last applied (zero values
// normalised: Proto, Hash, LACP, RoundRobin.Stride and the announcement
// settings are never zero).
func (l *Lagg) Config() Config {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg
}

// Apply moves the lagg to c. Applying the settings it runs changes nothing
// (no port touched, no failover, no announcement); otherwise exactly what
// differs changes. It is all or nothing: c is checked as a whole first, and
// the one step a port can refuse — the MTU — runs first and is rolled back
// on every port if one refuses, so an error leaves the lagg as it was.
func (l *Lagg) Apply(c Config) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applyLocked(c)
}

// Update applies the lagg's current settings as changed by edit, in one
// step: Update(func(c *Config) { c.MTU = 9000 }). edit runs with the lagg's
// lock held and must not call the lagg.
func (l *Lagg) Update(edit func(c *Config)) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.cfg
	edit(&c)
	return l.applyLocked(c)
}

// +checklocks:l.mu
func (l *Lagg) applyLocked(c Config) error {
	c = c.normalized()
	if err := c.validate(); err != nil {
		return fmt.Errorf("lagg %s: %w", l.name, err)
	}
	if l.closed {
		return fmt.Errorf("lagg %s is closed", l.name)
	}
	changed := c.diff(l.cfg)
	if len(changed) == 0 {
		return nil
	}
	var next protocol
	if c.Proto != l.cfg.Proto {
		ctor, _ := lookupProtocol(c.Proto) // validated
		next = ctor()
	}
	if mtu := l.mtuFor(c); mtu != l.mtu.Load() {
		if err := l.setPortsMTULocked(mtu); err != nil {
			return err
		}
	}
	l.cfg = c
	macChanged := l.updateMACLocked()
	ctx := l.ctxLocked()
	if next != nil {
		l.proto.detach(ctx)
		l.stopProtoTimerLocked()
		l.proto = next
		next.attach(ctx)
		for _, p := range l.ports {
			next.portAdded(ctx, p)
		}
		l.log.Info("protocol changed", "proto", c.Proto)
	} else if macChanged || slices.ContainsFunc(changed, func(s string) bool { return s != "mtu" && s != "delays" && s != "announce" }) {
		l.proto.configChanged(ctx)
	}
	l.finishLocked(ctx)
	if slices.Contains(changed, "monitor") {
		l.monitorRestartLocked()
	}
	l.log.Info("settings applied", "changed", strings.Join(changed, ","))
	l.emit(Event{Kind: EventConfig, Detail: strings.Join(changed, ",")})
	l.rebuildLocked()
	return nil
}

// mtuFor is the MTU c asks for: its own, else the derived one.
//
// +checklocks:l.mu
func (l *Lagg) mtuFor(c Config) uint32 {
	switch {
	case c.MTU != 0:
		return c.MTU
	case l.firstMTU != 0:
		return l.firstMTU
	}
	return DefaultMTU
}

// setPortsMTULocked applies mtu to every port, or to none: a port that
// refuses makes the others go back to the old MTU.
//
// +checklocks:l.mu
func (l *Lagg) setPortsMTULocked(mtu uint32) error {
	old := l.mtu.Load()
	for i, p := range l.ports {
		if err := p.child.SetPortMTU(mtu); err != nil {
			for _, q := range l.ports[:i] {
				if rerr := q.child.SetPortMTU(old); rerr != nil {
					l.log.Error("cannot roll back a port's MTU", "port", q.name, "mtu", old, "err", rerr)
				}
			}
			return fmt.Errorf("lagg %s: port %s refused MTU %d, every port keeps %d: %w", l.name, p.name, mtu, old, err)
		}
	}
	l.mtu.Store(mtu)
	l.log.Info("MTU changed", "mtu", mtu)
	return nil
}

// macFor is the MAC the lagg should use now: the configured one, else that
// of the port that joined first among those with a usable MAC (NetBSD: the
// first port's), else the lagg's random one.
//
// +checklocks:l.mu
func (l *Lagg) macFor() tcpip.LinkAddress {
	if l.cfg.MAC != "" {
		return l.cfg.MAC
	}
	var first *port
	for _, p := range l.ports {
		if validMAC(p.origMAC) == nil && (first == nil || p.seq < first.seq) {
			first = p
		}
	}
	if first != nil {
		return first.origMAC
	}
	return l.macRandom
}

// updateMACLocked moves the lagg and its ports to macFor and reports
// whether the MAC changed. The caller tells the protocol and rebuilds.
//
// +checklocks:l.mu
func (l *Lagg) updateMACLocked() bool {
	mac := l.macFor()
	if mac == l.mac {
		return false
	}
	l.mac = mac
	for _, p := range l.ports {
		p.child.SetLinkAddress(mac)
	}
	l.log.Info("lagg MAC changed", "mac", mac.String())
	return true
}

func validMAC(mac tcpip.LinkAddress) error {
	if len(mac) != header.EthernetAddressSize {
		return fmt.Errorf("MAC %q is not an Ethernet address", mac)
	}
	if mac[0]&1 != 0 {
		return fmt.Errorf("MAC %s is a group address", mac)
	}
	if mac == header.UnspecifiedEthernetAddress {
		return fmt.Errorf("MAC %s is all zero", mac)
	}
	return nil
}
