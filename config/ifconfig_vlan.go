package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// VLAN interfaces take NetBSD's vlan(4) words:
//
//	create | destroy                 create (first on the line) or remove the VLAN (last)
//	vlan N                           the VLAN ID, 1..4094 (with vlanif, or on a VLAN that has a parent)
//	vlanif IF                        the parent lagg
//	-vlanif                          detach: no ID and no parent (the VLAN carries nothing)
//	inet ... | inet6 ... | ADDR ...  addresses, as on a lagg
//
// A VLAN's MTU is its lagg's, and it is up while its lagg is.

// createNameError is the complaint about `ifconfig NAME create` for a
// name no cloner makes.
func createNameError(name string) error {
	return fmt.Errorf("%s: create: %q is neither a lagg (lagg0, lagg1, ...) nor a VLAN (vlan100, ...) interface name", name, name)
}

// parseVLANIfconfig parses the options of a VLAN interface's line.
func parseVLANIfconfig(name string, args []string) (*IfconfigCommand, error) {
	c := &IfconfigCommand{Lagg: name, vlan: true}
	p := &ifParser{args: args}
	if p.done() {
		return nil, fmt.Errorf("%s: no options given", name)
	}
	for !p.done() {
		start := p.i
		op, err := p.vlanOption()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		switch {
		case op.verb == "create" && len(c.ops) > 0:
			return nil, fmt.Errorf("%s: create must be the first option", name)
		case len(c.ops) > 0 && c.ops[len(c.ops)-1].verb == "destroy":
			return nil, fmt.Errorf("%s: %q after destroy: destroy must be the last option", name, strings.Join(p.args[start:p.i], " "))
		}
		c.ops = append(c.ops, op)
	}
	return c, nil
}

func (p *ifParser) vlanOption() (ifOp, error) {
	switch w := p.peek(); w {
	case "create", "destroy", "-vlanif":
		p.next()
		return ifOp{verb: w}, nil
	case "vlan":
		p.next()
		n, err := p.num(w, "VLAN ID", MinVLANID, MaxVLANID)
		return ifOp{verb: w, n: n}, err
	case "vlanif":
		p.next()
		s, err := p.arg(w, "parent interface (a lagg)")
		if err != nil {
			return ifOp{}, err
		}
		if err := portName(w, s); err != nil {
			return ifOp{}, err
		}
		return ifOp{verb: w, key: s}, nil
	case "inet", "inet6":
		return p.single()
	case "mtu":
		return ifOp{}, errors.New("mtu: a VLAN's MTU is its lagg's (ulagg ifconfig LAGG mtu N)")
	case "up", "down":
		return ifOp{}, fmt.Errorf("%s: a VLAN is up while its lagg is; detach it with -vlanif", w)
	default:
		if looksLikeAddress(w) {
			return p.single()
		}
		if strings.HasPrefix(w, "lagg") || strings.HasPrefix(w, "-lagg") {
			return ifOp{}, fmt.Errorf("%s is a lagg option; a VLAN takes vlan N, vlanif IF, -vlanif, inet, inet6, create and destroy", w)
		}
		return ifOp{}, fmt.Errorf("unknown option %q: a VLAN takes vlan N, vlanif IF, -vlanif, inet, inet6, create and destroy", w)
	}
}

// vlanWords are a VLAN op in canonical words, or nil for another verb.
func (op ifOp) vlanWords() []string {
	switch op.verb {
	case "vlan":
		return []string{op.verb, fmt.Sprint(op.n)}
	case "vlanif":
		return []string{op.verb, op.key}
	}
	return nil
}

// applyVLAN is Apply for a VLAN interface's line.
func (c *IfconfigCommand) applyVLAN(cfg *Config) (*Config, error) {
	next := cfg.Clone()
	name := c.Lagg
	idx := slices.IndexFunc(next.VLANs, func(v VLAN) bool { return v.Name == name })
	for _, op := range c.ops {
		switch {
		case op.verb == "create":
			if idx >= 0 {
				return nil, fmt.Errorf("%s: create: %s already exists", name, name)
			}
			next.VLANs = append(next.VLANs, VLAN{Name: name})
			idx = len(next.VLANs) - 1
			continue
		case idx < 0:
			return nil, fmt.Errorf("%s: no such VLAN interface (create it first: ulagg ifconfig %s create)", name, name)
		case op.verb == "destroy":
			for _, s := range next.Services {
				if s.Lagg == name {
					return nil, fmt.Errorf("%s: destroy: the %s service on port %d is bound to %s; remove it from the configuration first", name, s.Kind, s.Port, name)
				}
			}
			next.VLANs = slices.Delete(next.VLANs, idx, idx+1)
			idx = -1
			continue
		}
		v := &next.VLANs[idx]
		switch op.verb {
		case "vlan":
			v.ID = uint16(op.n)
		case "vlanif":
			if next.Lagg(op.key) == nil {
				return nil, fmt.Errorf("%s: vlanif %s: no lagg is named %s (a VLAN's parent is a lagg)", name, op.key, op.key)
			}
			v.Parent = op.key
		case "-vlanif":
			v.ID, v.Parent = 0, ""
		case "inet", "inet6":
			l := Lagg{Name: name, Addresses: v.Addresses}
			if err := applyAddress(&l, op); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", name, strings.Join(op.words(), " "), err)
			}
			v.Addresses = l.Addresses
		case "dhcp": // inet dhcp, inet -dhcp (dhcp.go)
			v.DHCP = op.on
		}
	}
	if idx >= 0 {
		v := &next.VLANs[idx]
		if v.Parent != "" && v.ID == 0 {
			return nil, fmt.Errorf("%s: vlanif %s needs a VLAN ID too: vlan N vlanif %s", name, v.Parent, v.Parent)
		}
		if v.ID != 0 && v.Parent == "" {
			return nil, fmt.Errorf("%s: vlan %d needs a parent too: vlan %d vlanif LAGG", name, v.ID, v.ID)
		}
		if len(v.Addresses) == 0 {
			v.Addresses = nil
		}
	}
	if len(next.VLANs) == 0 {
		next.VLANs = nil
	}
	if err := next.Validate(); err != nil {
		return nil, fmt.Errorf("%s: the result is not a valid configuration: %w", name, err)
	}
	return next, nil
}

// laggDestroyVLANs refuses to destroy lagg name while VLANs sit on it.
func laggDestroyVLANs(cfg *Config, name string) error {
	for _, v := range cfg.VLANs {
		if v.Parent == name {
			return fmt.Errorf("%s: destroy: %s is on it (vlan %d); detach it first (ulagg ifconfig %s -vlanif) or destroy it", name, v.Name, v.ID, v.Name)
		}
	}
	return nil
}
