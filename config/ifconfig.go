package config

import (
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ulagg/ulagg/lagg"
)

// IfconfigCommand is one `ulagg ifconfig LAGG OPTION...` line, parsed with
// NetBSD's ifconfig(8) syntax for lagg(4). Apply turns it into a new
// configuration: every option on the line takes effect or none does.
//
// Options, applied left to right:
//
//	create | destroy                 create (first on the line) or remove the lagg (last)
//	laggproto none|failover|loadbalance|lacp|roundrobin|broadcast
//	-laggproto                       same as laggproto none
//	laggport IF [pri N] [tso | -tso] add port IF, priority 0..65535 (default 32768);
//	                                 -tso: the port offers no host GSO (gso = false),
//	                                 for peers that take no frame above the MTU;
//	                                 on a port IF already has, tso/-tso alone changes it
//	                                 (the port is reopened)
//	laggport IF -active | active     disable port IF without removing it (it counts as
//	                                 link down; LACP takes it out of the aggregation),
//	                                 or enable it again; a ulagg extension: neither
//	                                 NetBSD nor FreeBSD has it (Linux: bond/disable-member)
//	-laggport IF                     remove port IF
//	laggportpri IF N                 change the priority of port IF
//	laggfailover rx-all|-rx-all ...  failover only: receive on every port or the TX port
//	laggroundrobin stride N          roundrobin only: N frames per port in turn (1..65535);
//	                                 also FreeBSD's rr_limit N
//	laggmonitor OPTION...            link monitor ([lagg.monitor]), one or more of:
//	    arp ADDR... | -arp           IPv4 targets probed with ARP (-arp: none)
//	    ns ADDR... | -ns             IPv6 targets probed with neighbour solicitations
//	    interval MS                  probe interval, 10..60000 ms (default 1000)
//	    missed N                     unanswered intervals before a port is down, 1..255 (2)
//	    validate all|active|backup   ports that need replies to their own probes (all)
//	    require any|all              targets that must answer (any)
//	-laggmonitor                     no link monitor
//	lagglacp OPTION...               lacp only, one or more of:
//	    multi-speed | -multi-speed   (also multi-linkspeed) ports of mixed speeds aggregate
//	    maxports N | -maxports       1..16 ports distributing (-maxports: 16)
//	    minports N | -minports       1..16 ports distributing for the lagg to be up (-: 1)
//	    fast | slow                  LACPDU rate asked of the partner (1 s or 30 s)
//	    active | passive             LACP mode
//	    sysprio N | -sysprio         system priority 1..65535 (-sysprio: 32768)
//	    key N | -key                 actor key 0..65535 (-key, 0: derived)
//	    fallback | -fallback         carry traffic while no partner answers
//	    select stable|bandwidth|count | -select
//	                                 aggregator used when links see different partners
//	                                 (-select: stable)
//	inet ADDR[/LEN] [netmask M] [prefixlen N] [alias | -alias | delete]
//	inet6 ADDR[/LEN] [prefixlen N] [alias | -alias | delete]
//	ADDR ...                         a bare address: inet, or inet6 if it is IPv6
//	inet dhcp | inet -dhcp           run (stop, releasing the lease) the built-in DHCPv4
//	                                 client; also dhcp, -dhcp. NetBSD runs dhcpcd(8) for
//	                                 this; ulagg has no dhcpcd and no DHCPv6
//	inet6 slaac | inet6 -slaac       take (stop taking) IPv6 addresses and routers from
//	                                 router advertisements; also FreeBSD's accept_rtadv
//	mtu N                            68..65535, applied to every port
//	up | down                        administrative state
//
// As in NetBSD, `inet ADDR` without alias replaces the first IPv4 address
// (an IPv4 address without a length keeps the length it has, or else gets
// its classful mask, as NetBSD's in_ifinit does), while inet6 always adds
// (default /64). `-alias` and `delete` remove an address whatever its
// length. Options of a protocol are refused unless the lagg runs it at that
// point of the line, so `laggproto lacp lagglacp maxports 2` works. Unlike
// NetBSD, changing the protocol keeps the ports (lagg.SetProto) and proto
// none accepts ports.
//
// A VLAN interface's line (vlan100 ...) takes NetBSD's vlan(4) words
// instead: create, destroy, vlan N, vlanif LAGG, -vlanif, and the inet,
// inet6 and dhcp words above (ifconfig_vlan.go).
type IfconfigCommand struct {
	Lagg string // the interface: a lagg, or a VLAN when vlan is set
	ops  []ifOp
	vlan bool // a VLAN interface's line (ifconfig_vlan.go)
}

// addrMode says what an inet or inet6 option does.
type addrMode int

const (
	addrReplace addrMode = iota // inet without alias: replace the first IPv4 address
	addrAdd                     // alias, and inet6 by default
	addrDelete                  // -alias, delete
)

// ifOp is one option. Fields not used by its verb are zero; n and bits are
// -1 when the argument was not given.
type ifOp struct {
	verb string // create, destroy, laggproto, laggport, -laggport, laggportpri, laggfailover, lagglacp, inet, inet6, mtu, up, down
	key  string // lagglacp/laggfailover keyword; protocol name; port name
	n    int    // priority, count, MTU, ...
	on   bool   // for +/- keywords
	tso  int    // laggport: 1 tso, -1 -tso, 0 not given
	act  int    // laggport: 1 active, -1 -active (Port.Disabled), 0 not given
	addr netip.Addr
	bits int
	mode addrMode
	mon  *monitorEdit // laggmonitor (monitor.go)
}

// maxU16 bounds priorities, keys and the MTU, as in the config schema.
const maxU16 = 65535

// lacpNegatable are lagglacp keywords that take a leading '-'.
var lacpNegatable = []string{"multi-speed", "multi-linkspeed", "fallback"}

// netbsdOnly are NetBSD lagglacp debug keywords that ulagg does not have.
var netbsdOnly = []string{"dumpdu", "stopdu", "optimistic"}

// ParseIfconfig parses args: the lagg's name, then one or more options. It
// checks syntax and ranges only; Apply checks them against a configuration.
func ParseIfconfig(args []string) (*IfconfigCommand, error) {
	if len(args) == 0 {
		return nil, errors.New("missing interface name")
	}
	name := args[0]
	if IsVLANName(name) {
		return parseVLANIfconfig(name, args[1:]) // ifconfig_vlan.go
	}
	if !validLaggName(name) {
		return nil, fmt.Errorf("%q is not a lagg name: want a lowercase letter, then up to 14 of a-z 0-9 _ . - (like lagg0)", name)
	}
	c := &IfconfigCommand{Lagg: name}
	p := &ifParser{args: args[1:]}
	if p.done() {
		return nil, fmt.Errorf("%s: no options given", name)
	}
	for !p.done() {
		start := p.i
		ops, err := p.option()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		switch {
		case ops[0].verb == "create" && len(c.ops) > 0:
			return nil, fmt.Errorf("%s: create must be the first option", name)
		case ops[0].verb == "create" && !IsLaggName(name):
			return nil, createNameError(name)
		case len(c.ops) > 0 && c.ops[len(c.ops)-1].verb == "destroy":
			return nil, fmt.Errorf("%s: %q after destroy: destroy must be the last option", name, strings.Join(p.args[start:p.i], " "))
		}
		c.ops = append(c.ops, ops...)
	}
	return c, nil
}

type ifParser struct {
	args []string
	i    int
}

func (p *ifParser) done() bool { return p.i >= len(p.args) }

func (p *ifParser) peek() string {
	if p.done() {
		return ""
	}
	return p.args[p.i]
}

func (p *ifParser) next() string {
	s := p.peek()
	p.i++
	return s
}

// arg returns the argument of option, or an error naming what is missing.
func (p *ifParser) arg(option, what string) (string, error) {
	if p.done() {
		return "", fmt.Errorf("%s: missing %s", option, what)
	}
	return p.next(), nil
}

// num parses the numeric argument of option within lo..hi.
func (p *ifParser) num(option, what string, lo, hi int) (int, error) {
	s, err := p.arg(option, what)
	if err != nil {
		return 0, err
	}
	return parseNum(option, what, s, lo, hi)
}

func parseNum(option, what, s string, lo, hi int) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %s %q is not a number", option, what, s)
	}
	if n < int64(lo) || n > int64(hi) {
		return 0, fmt.Errorf("%s: %s %d is out of range %d..%d", option, what, n, lo, hi)
	}
	return int(n), nil
}

func portName(option, s string) error {
	if msg := checkIfName(s); msg != "" {
		return fmt.Errorf("%s: interface name %q %s", option, s, msg)
	}
	return nil
}

func (p *ifParser) option() ([]ifOp, error) {
	switch p.peek() {
	case "laggfailover":
		p.next()
		return p.failoverOption()
	case "lagglacp":
		p.next()
		return p.lacpOption()
	case "laggmonitor", "-laggmonitor":
		return p.monitorOption() // monitor.go
	case "laggroundrobin":
		p.next()
		if p.peek() != "stride" {
			return nil, fmt.Errorf("laggroundrobin: unknown option %q: want stride N", p.peek())
		}
		p.next()
		fallthrough
	case "rr_limit": // FreeBSD's spelling
		if p.peek() == "rr_limit" {
			p.next()
		}
		n, err := p.num("laggroundrobin stride", "stride", 1, MaxStride)
		if err != nil {
			return nil, err
		}
		return []ifOp{{verb: "laggroundrobin", key: "stride", n: n}}, nil
	}
	op, err := p.single()
	if err != nil {
		return nil, err
	}
	return []ifOp{op}, nil
}

// single parses an option that makes one op.
func (p *ifParser) single() (ifOp, error) {
	w := p.next()
	switch w {
	case "create", "destroy", "up", "down":
		return ifOp{verb: w}, nil
	case "laggproto":
		protos := lagg.ProtocolNames()
		s, err := p.arg(w, "protocol ("+strings.Join(protos, ", ")+")")
		if err != nil {
			return ifOp{}, err
		}
		if !slices.Contains(protos, s) {
			return ifOp{}, fmt.Errorf("laggproto: unknown protocol %q: want one of %s", s, strings.Join(protos, ", "))
		}
		return ifOp{verb: w, key: s}, nil
	case "-laggproto":
		return ifOp{verb: "laggproto", key: ProtoNone}, nil
	case "laggport":
		s, err := p.arg(w, "interface name")
		if err != nil {
			return ifOp{}, err
		}
		if err := portName(w, s); err != nil {
			return ifOp{}, err
		}
		op := ifOp{verb: w, key: s, n: -1}
		for {
			switch m := p.peek(); m {
			case "pri":
				p.next()
				if op.n >= 0 {
					return ifOp{}, fmt.Errorf("laggport %s: pri given twice", s)
				}
				if op.n, err = p.num("laggport "+s+" pri", "priority", 0, maxU16); err != nil {
					return ifOp{}, err
				}
				continue
			case "tso", "-tso", "active", "-active":
				p.next()
				word, dst := strings.TrimPrefix(m, "-"), &op.tso
				if word == "active" {
					dst = &op.act
				}
				if *dst != 0 {
					return ifOp{}, fmt.Errorf("laggport %s: %s or -%s given twice", s, word, word)
				}
				*dst = 1
				if m[0] == '-' {
					*dst = -1
				}
				continue
			case "tso4", "-tso4", "tso6", "-tso6":
				return ifOp{}, fmt.Errorf("laggport %s %s: a port's GSO is one setting for IPv4 and IPv6: use tso or -tso", s, m)
			}
			return op, nil
		}
	case "-laggport":
		s, err := p.arg(w, "interface name")
		if err != nil {
			return ifOp{}, err
		}
		if err := portName(w, s); err != nil {
			return ifOp{}, err
		}
		return ifOp{verb: w, key: s}, nil
	case "laggportpri":
		s, err := p.arg(w, "interface name")
		if err != nil {
			return ifOp{}, err
		}
		if err := portName(w, s); err != nil {
			return ifOp{}, err
		}
		if p.peek() == "pri" { // lagg_usage() prints "laggportpri i [ pri n ]"
			p.next()
		}
		n, err := p.num("laggportpri "+s, "priority", 0, maxU16)
		if err != nil {
			return ifOp{}, err
		}
		return ifOp{verb: w, key: s, n: n}, nil
	case "inet", "inet6":
		s, err := p.arg(w, "address")
		if err != nil {
			return ifOp{}, err
		}
		if op, ok := dhcpOp(s); ok && w == "inet" { // inet dhcp, inet -dhcp (dhcp.go)
			return op, nil
		}
		if op, ok := slaacOp(s); ok && w == "inet6" { // inet6 slaac, inet6 -slaac
			return op, nil
		}
		return p.address(w, s)
	case "dhcp", "-dhcp":
		op, _ := dhcpOp(w)
		return op, nil
	case "mtu":
		n, err := p.num(w, "MTU", 68, maxU16)
		if err != nil {
			return ifOp{}, err
		}
		return ifOp{verb: w, n: n}, nil
	}
	if looksLikeAddress(w) {
		verb := "inet"
		if strings.Contains(w, ":") {
			verb = "inet6"
		}
		return p.address(verb, w)
	}
	return ifOp{}, unknownOption(w)
}

// failoverOption parses `laggfailover KEYWORD...`: NetBSD's parser takes
// any number of keywords after one laggfailover.
func (p *ifParser) failoverOption() ([]ifOp, error) {
	var ops []ifOp
	for !p.done() {
		switch p.peek() {
		case "rx-all", "-rx-all":
			ops = append(ops, ifOp{verb: "laggfailover", key: "rx-all", on: p.next() == "rx-all"})
			continue
		}
		if len(ops) == 0 {
			return nil, fmt.Errorf("laggfailover: unknown option %q: want rx-all or -rx-all", p.peek())
		}
		return ops, nil
	}
	if len(ops) == 0 {
		return nil, errors.New("laggfailover: missing option: want rx-all or -rx-all")
	}
	return ops, nil
}

// lacpOption parses `lagglacp KEYWORD...`, one op per keyword.
func (p *ifParser) lacpOption() ([]ifOp, error) {
	var ops []ifOp
	for !p.done() {
		op, ok, err := p.lacpKeyword()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		ops = append(ops, op)
	}
	if len(ops) == 0 {
		if p.done() {
			return nil, errors.New("lagglacp: missing option")
		}
		return nil, fmt.Errorf("lagglacp: unknown option %q: want multi-speed, maxports N, minports N, fast, slow, active, passive, sysprio N, key N, fallback or select POLICY (or a -negation)", p.peek())
	}
	return ops, nil
}

func isLACPKeyword(s string) bool {
	switch strings.TrimPrefix(s, "-") {
	case "multi-speed", "multi-linkspeed", "maxports", "minports", "sysprio", "key", "fallback", "select",
		"dumpdu", "stopdu", "optimistic":
		return true
	}
	switch s {
	case "fast", "slow", "active", "passive":
		return true
	}
	return false
}

// lacpKeyword parses the keyword at p; ok is false if it is not one.
func (p *ifParser) lacpKeyword() (op ifOp, ok bool, err error) {
	w := p.peek()
	op = ifOp{verb: "lagglacp", n: -1}
	neg := strings.HasPrefix(w, "-")
	base := strings.TrimPrefix(w, "-")
	switch {
	case slices.Contains(netbsdOnly, base):
		return op, false, fmt.Errorf("lagglacp %s: NetBSD's debugging option %s is not supported by ulagg", w, base)
	case slices.Contains(lacpNegatable, base):
		p.next()
		if base == "multi-linkspeed" {
			base = "multi-speed"
		}
		op.key, op.on = base, !neg
		return op, true, nil
	case base == "maxports" || base == "minports" || base == "sysprio" || base == "key":
		p.next()
		op.key = base
		if neg {
			return op, true, nil // -maxports etc.: back to the default
		}
		lo, hi := 1, MaxLACPPorts
		switch base {
		case "sysprio":
			hi = maxU16
		case "key":
			lo, hi = 0, maxU16
		}
		op.n, err = p.num("lagglacp "+base, "value", lo, hi)
		return op, err == nil, err
	case base == "select":
		p.next()
		op.key = base
		if neg {
			return op, true, nil // -select: back to the default
		}
		v, err := p.arg("lagglacp select", "policy ("+strings.Join(lacpSelects, ", ")+")")
		if err != nil {
			return op, false, err
		}
		if op.n = slices.Index(lacpSelects, v); op.n < 0 {
			return op, false, fmt.Errorf("lagglacp select: unknown policy %q: want one of %s", v, strings.Join(lacpSelects, ", "))
		}
		return op, true, nil
	case !neg && (w == "fast" || w == "slow" || w == "active" || w == "passive"):
		p.next()
		op.key = w
		return op, true, nil
	}
	return op, false, nil
}

// looksLikeAddress reports whether s starts like an IP address, so that a
// bare address is recognised and a mistyped one gets an address error.
func looksLikeAddress(s string) bool {
	if s == "" {
		return false
	}
	if strings.Contains(s, ":") {
		_, err := netip.ParseAddr(strings.SplitN(s, "/", 2)[0])
		return err == nil
	}
	return s[0] >= '0' && s[0] <= '9' && strings.Contains(s, ".")
}

// address parses ADDR[/LEN] and the words that may follow it.
func (p *ifParser) address(verb, s string) (ifOp, error) {
	op := ifOp{verb: verb, bits: -1, mode: addrReplace}
	if verb == "inet6" {
		op.mode = addrAdd
	}
	addrPart, lenPart, hasLen := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addrPart)
	if err != nil {
		return ifOp{}, fmt.Errorf("%s: %q is not an address", verb, s)
	}
	switch {
	case verb == "inet" && !a.Is4():
		return ifOp{}, fmt.Errorf("inet: %s is not an IPv4 address (use inet6)", addrPart)
	case verb == "inet6" && !a.Is6():
		return ifOp{}, fmt.Errorf("inet6: %s is not an IPv6 address (use inet)", addrPart)
	case a.Zone() != "":
		return ifOp{}, fmt.Errorf("%s: %s: zones are not supported", verb, s)
	}
	op.addr = a
	maxBits := a.BitLen()
	if hasLen {
		if op.bits, err = parseNum(verb+" "+s, "prefix length", lenPart, 0, maxBits); err != nil {
			return ifOp{}, err
		}
	}
	modeSet := false
	setMode := func(m addrMode, w string) error {
		if modeSet && op.mode != m {
			return fmt.Errorf("%s %s: %s conflicts with an earlier alias, -alias or delete", verb, s, w)
		}
		op.mode, modeSet = m, true
		return nil
	}
	setBits := func(n int, w string) error {
		if op.bits >= 0 && op.bits != n {
			return fmt.Errorf("%s %s: %s gives prefix length %d, but %d was given already", verb, s, w, n, op.bits)
		}
		op.bits = n
		return nil
	}
	for !p.done() {
		var err error
		switch w := p.peek(); w {
		case "alias":
			err = setMode(addrAdd, w)
		case "-alias", "delete":
			err = setMode(addrDelete, w)
		case "netmask":
			p.next()
			if verb != "inet" {
				return ifOp{}, fmt.Errorf("%s %s: netmask is for inet; use prefixlen", verb, s)
			}
			m, merr := p.arg("netmask", "mask (like 255.255.255.0)")
			if merr != nil {
				return ifOp{}, merr
			}
			n, merr := parseNetmask(m)
			if merr != nil {
				return ifOp{}, merr
			}
			if err := setBits(n, "netmask "+m); err != nil {
				return ifOp{}, err
			}
			continue
		case "prefixlen":
			p.next()
			n, nerr := p.num("prefixlen", "length", 0, maxBits)
			if nerr != nil {
				return ifOp{}, nerr
			}
			if err := setBits(n, "prefixlen "+strconv.Itoa(n)); err != nil {
				return ifOp{}, err
			}
			continue
		case "broadcast":
			return ifOp{}, fmt.Errorf("%s %s: broadcast is not supported: the broadcast address follows the prefix length", verb, s)
		default:
			return op, nil
		}
		if err != nil {
			return ifOp{}, err
		}
		p.next()
	}
	return op, nil
}

// parseNetmask accepts a dotted mask (255.255.255.0) or NetBSD's hex form
// (0xffffff00) and returns its length; the ones must be contiguous.
func parseNetmask(s string) (int, error) {
	var m uint32
	if h, ok := strings.CutPrefix(strings.ToLower(s), "0x"); ok {
		v, err := strconv.ParseUint(h, 16, 32)
		if err != nil {
			return 0, fmt.Errorf("netmask: %q is not a mask (like 255.255.255.0 or 0xffffff00)", s)
		}
		m = uint32(v)
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return 0, fmt.Errorf("netmask: %q is not a mask (like 255.255.255.0 or 0xffffff00)", s)
		}
		b := a.As4()
		m = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	}
	n := bits.LeadingZeros32(^m)
	if n < 32 && m<<n != 0 {
		return 0, fmt.Errorf("netmask: %s is not contiguous (ones, then zeros)", s)
	}
	return n, nil
}

// topOptions are the option words, for "did you mean" hints.
var topOptions = []string{
	"create", "destroy", "laggproto", "-laggproto", "laggport", "-laggport", "laggportpri",
	"laggfailover", "lagglacp", "laggroundrobin", "rr_limit", "inet", "inet6", "mtu", "up", "down",
	"laggmonitor", "-laggmonitor",
}

func unknownOption(w string) error {
	for _, o := range topOptions {
		if fold(o) == fold(w) && o != w {
			return fmt.Errorf("unknown option %q (did you mean %s?)", w, o)
		}
	}
	if isLACPKeyword(w) {
		return fmt.Errorf("unknown option %q: it is a lagglacp option (lagglacp %s)", w, w)
	}
	if w == "rx-all" || w == "-rx-all" {
		return fmt.Errorf("unknown option %q: it is a laggfailover option (laggfailover %s)", w, w)
	}
	if strings.HasPrefix(strings.TrimPrefix(w, "-"), "tso") {
		return fmt.Errorf("unknown option %q: GSO is set per port (laggport IF tso or laggport IF -tso)", w)
	}
	return fmt.Errorf("unknown option %q", w)
}

// Args returns the command in canonical form, lagg name first; parsing it
// again gives the same command.
func (c *IfconfigCommand) Args() []string {
	out := []string{c.Lagg}
	for _, op := range c.ops {
		out = append(out, op.words()...)
	}
	return out
}

// String returns Args joined by spaces.
func (c *IfconfigCommand) String() string { return strings.Join(c.Args(), " ") }

func (op ifOp) words() []string {
	if w := op.vlanWords(); w != nil {
		return w
	}
	if op.mon != nil {
		return op.mon.words() // monitor.go
	}
	switch op.verb {
	case "laggproto":
		return []string{op.verb, op.key}
	case "laggport":
		w := []string{op.verb, op.key}
		if op.n >= 0 {
			w = append(w, "pri", strconv.Itoa(op.n))
		}
		switch op.tso {
		case 1:
			w = append(w, "tso")
		case -1:
			w = append(w, "-tso")
		}
		switch op.act {
		case 1:
			w = append(w, "active")
		case -1:
			w = append(w, "-active")
		}
		return w
	case "-laggport":
		return []string{op.verb, op.key}
	case "laggportpri":
		return []string{op.verb, op.key, strconv.Itoa(op.n)}
	case "laggfailover":
		return []string{op.verb, sign(op.on) + "rx-all"}
	case "laggroundrobin":
		return []string{op.verb, op.key, strconv.Itoa(op.n)}
	case "lagglacp":
		switch op.key {
		case "multi-speed", "fallback":
			return []string{op.verb, sign(op.on) + op.key}
		case "maxports", "minports", "sysprio", "key":
			if op.n < 0 {
				return []string{op.verb, "-" + op.key}
			}
			return []string{op.verb, op.key, strconv.Itoa(op.n)}
		}
		return []string{op.verb, op.key}
	case "inet", "inet6":
		w := []string{op.verb, op.addr.String()}
		if op.bits >= 0 {
			w[1] = netip.PrefixFrom(op.addr, op.bits).String()
		}
		switch op.mode {
		case addrAdd:
			if op.verb == "inet" {
				w = append(w, "alias")
			}
		case addrDelete:
			w = append(w, "delete")
		}
		return w
	case "mtu":
		return []string{op.verb, strconv.Itoa(op.n)}
	case "dhcp":
		return []string{"inet", sign(op.on) + "dhcp"}
	case "slaac":
		return []string{"inet6", sign(op.on) + "slaac"}
	}
	return []string{op.verb}
}

func sign(on bool) string {
	if on {
		return ""
	}
	return "-"
}
