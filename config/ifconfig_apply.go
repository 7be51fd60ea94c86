package config

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Apply returns a copy of cfg with the command applied, validated as a
// whole; cfg itself is never changed, so a refused line leaves nothing
// half-done. kindOf names the kind of a port that cfg does not have yet
// (nil, or "" from it, means afpacket: a host interface); a port that cfg
// already has, in any lagg, keeps its kind.
func (c *IfconfigCommand) Apply(cfg *Config, kindOf func(name string) string) (*Config, error) {
	if cfg == nil {
		cfg = Default()
	}
	if c.vlan {
		return c.applyVLAN(cfg) // ifconfig_vlan.go
	}
	next := cfg.Clone()
	idx := slices.IndexFunc(next.Laggs, func(l Lagg) bool { return l.Name == c.Lagg })
	for _, op := range c.ops {
		switch {
		case op.verb == "create":
			if idx >= 0 {
				return nil, fmt.Errorf("%s: create: %s already exists", c.Lagg, c.Lagg)
			}
			next.Laggs = append(next.Laggs, NewLagg(c.Lagg))
			idx = len(next.Laggs) - 1
			continue
		case idx < 0:
			return nil, fmt.Errorf("%s: no such lagg (create it first: ulagg ifconfig %s create; host interfaces are not managed by ulagg)", c.Lagg, c.Lagg)
		case op.verb == "destroy":
			if err := laggDestroyVLANs(next, c.Lagg); err != nil {
				return nil, err
			}
			for _, s := range next.Services {
				if s.Lagg == c.Lagg {
					return nil, fmt.Errorf("%s: destroy: the %s service on port %d is bound to %s; remove it from the configuration first", c.Lagg, s.Kind, s.Port, c.Lagg)
				}
			}
			next.Laggs = slices.Delete(next.Laggs, idx, idx+1)
			idx = -1
			continue
		}
		if err := applyOp(next, &next.Laggs[idx], op, cfg, kindOf); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c.Lagg, strings.Join(op.words(), " "), err)
		}
	}
	if idx >= 0 {
		l := &next.Laggs[idx]
		if l.LACP.MinPorts > l.LACP.MaxPorts {
			return nil, fmt.Errorf("%s: lagglacp minports %d is more than maxports %d", c.Lagg, l.LACP.MinPorts, l.LACP.MaxPorts)
		}
		// Empty lists are nil, as Parse makes them, so that a saved
		// configuration reads back equal.
		if len(l.Addresses) == 0 {
			l.Addresses = nil
		}
		if len(l.Ports) == 0 {
			l.Ports = nil
		}
	}
	if len(next.Laggs) == 0 {
		next.Laggs = nil
	}
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("%s: the result is not a valid configuration: %w", c.Lagg, err)
	}
	return next, nil
}

func applyOp(next *Config, l *Lagg, op ifOp, orig *Config, kindOf func(string) string) error {
	switch op.verb {
	case "laggproto":
		l.Proto = op.key
	case "laggport":
		if i := findPort(l.Ports, op.key); i >= 0 {
			if (op.tso != 0 || op.act != 0) && op.n < 0 {
				// laggport IF -tso or -active on a port it has: change
				// only what is given.
				if op.tso != 0 {
					l.Ports[i].DisableGSO = op.tso < 0
				}
				if op.act != 0 {
					l.Ports[i].Disabled = op.act < 0
				}
				return nil
			}
			return fmt.Errorf("%s is already a port of %s (change its priority with laggportpri %s N, its GSO with laggport %s tso or -tso, disable it with laggport %s -active)", op.key, l.Name, op.key, op.key, op.key)
		}
		for _, o := range next.Laggs {
			if o.Name != l.Name && findPort(o.Ports, op.key) >= 0 {
				return fmt.Errorf("%s is a port of %s; remove it there first (ulagg ifconfig %s -laggport %s)", op.key, o.Name, o.Name, op.key)
			}
		}
		if len(l.Ports) >= MaxPorts {
			return fmt.Errorf("%s already has the maximum of %d ports", l.Name, MaxPorts)
		}
		p := newPort(op.key)
		p.Kind = portKind(orig, op.key, kindOf)
		if op.n >= 0 {
			p.Priority = uint16(op.n)
		}
		p.DisableGSO = op.tso < 0
		p.Disabled = op.act < 0
		l.Ports = append(l.Ports, p)
	case "-laggport", "laggportpri":
		i := findPort(l.Ports, op.key)
		if i < 0 {
			return fmt.Errorf("%s is not a port of %s", op.key, l.Name)
		}
		if op.verb == "-laggport" {
			l.Ports = slices.Delete(l.Ports, i, i+1)
		} else {
			l.Ports[i].Priority = uint16(op.n)
		}
	case "laggfailover":
		if l.Proto != ProtoFailover {
			return fmt.Errorf("laggfailover options need laggproto failover; %s runs %s", l.Name, l.Proto)
		}
		l.Failover.RxAll = op.on
	case "laggmonitor":
		return op.mon.apply(&l.Monitor) // monitor.go
	case "laggroundrobin":
		if l.Proto != ProtoRoundRobin {
			return fmt.Errorf("laggroundrobin options need laggproto roundrobin; %s runs %s", l.Name, l.Proto)
		}
		l.RoundRobin.Stride = op.n
	case "lagglacp":
		if l.Proto != ProtoLACP {
			return fmt.Errorf("lagglacp options need laggproto lacp; %s runs %s", l.Name, l.Proto)
		}
		applyLACP(&l.LACP, op)
	case "inet", "inet6":
		return applyAddress(l, op)
	case "mtu":
		l.MTU = uint32(op.n)
	case "up", "down":
		l.Down = op.verb == "down"
	case "dhcp":
		l.DHCP = op.on
	case "slaac":
		l.SLAAC = op.on
	default:
		return errors.New("unknown option") // ParseIfconfig makes no other verbs
	}
	return nil
}

// applyLACP sets one lagglacp option; n < 0 (a -negation) means the default.
func applyLACP(c *LACP, op ifOp) {
	def := NewLagg("").LACP
	or := func(d int) int {
		if op.n < 0 {
			return d
		}
		return op.n
	}
	switch op.key {
	case "multi-speed":
		c.MultiSpeed = op.on
	case "fallback":
		c.Fallback = op.on
	case "select":
		c.Select = "" // -select: the default, stable
		if op.n >= 0 {
			c.Select = lacpSelects[op.n]
		}
	case "maxports":
		c.MaxPorts = or(def.MaxPorts)
	case "minports":
		c.MinPorts = or(def.MinPorts)
	case "sysprio":
		c.SystemPriority = uint16(or(int(def.SystemPriority)))
	case "key":
		c.Key = uint16(or(int(def.Key)))
	case "fast", "slow":
		c.Rate = op.key
	case "active", "passive":
		c.Mode = op.key
	}
}

func applyAddress(l *Lagg, op ifOp) error {
	i := slices.IndexFunc(l.Addresses, func(p netip.Prefix) bool { return p.Addr() == op.addr })
	if op.mode == addrDelete {
		if i < 0 {
			return fmt.Errorf("%s is not an address of %s", op.addr, l.Name)
		}
		l.Addresses = slices.Delete(l.Addresses, i, i+1)
		return nil
	}
	bits := op.bits
	switch {
	case bits >= 0:
	case i >= 0:
		bits = l.Addresses[i].Bits() // a new netmask only if one is given
	case op.addr.Is4():
		bits = classfulBits(op.addr)
	default:
		bits = 64
	}
	p := netip.PrefixFrom(op.addr, bits)
	if i < 0 && op.mode == addrReplace {
		i = slices.IndexFunc(l.Addresses, func(p netip.Prefix) bool { return p.Addr().Is4() })
	}
	if i >= 0 {
		l.Addresses[i] = p
	} else {
		l.Addresses = append(l.Addresses, p)
	}
	return nil
}

// classfulBits is the mask NetBSD's in_ifinit guesses for an address given
// without one: class A /8, B /16, else /24.
func classfulBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}

func findPort(ports []Port, name string) int {
	return slices.IndexFunc(ports, func(p Port) bool { return p.Name == name })
}

// portKind is the kind of port name: the one it has anywhere in cfg, else
// what kindOf says, else afpacket.
func portKind(cfg *Config, name string, kindOf func(string) string) string {
	for _, l := range cfg.Laggs {
		if i := findPort(l.Ports, name); i >= 0 {
			return l.Ports[i].Kind
		}
	}
	if kindOf != nil {
		if k := kindOf(name); k != "" {
			return k
		}
	}
	return "afpacket"
}
