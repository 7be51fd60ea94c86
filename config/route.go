package config

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Route is one [[route]]: a static route of the appliance's stack.
type Route struct {
	// To is the destination; 0.0.0.0/0 or ::/0 for a default route (the
	// TOML spelling "default" takes its family from Via).
	To netip.Prefix
	// Via is the gateway; the zero Addr means on-link (Interface is then
	// required).
	Via netip.Addr
	// Interface names the lagg (or other interface) the route goes out
	// of; "" = the one whose subnet holds Via.
	Interface string
	// Metric orders routes of the same prefix length: lower wins.
	Metric uint32
}

// MaxRoutes bounds the [[route]] entries.
const MaxRoutes = 4096

var routeKeys = []string{"to", "via", "interface", "lagg", "metric"}

// IsDefault reports whether r is a default route.
func (r Route) IsDefault() bool { return r.To.IsValid() && r.To.Bits() == 0 }

// Same reports whether r and o are the same route (destination, gateway,
// interface), whatever their metrics.
func (r Route) Same(o Route) bool {
	return r.To == o.To && r.Via == o.Via && r.Interface == o.Interface
}

// String is the route in route(8) words: "default 192.168.1.254",
// "10.0.0.0/8 192.168.1.254 -ifp lagg0 -metric 5", "10.9.0.0/16 -ifp lagg1".
func (r Route) String() string {
	var b strings.Builder
	if r.IsDefault() {
		b.WriteString("default")
		if !r.Via.IsValid() { // the gateway gives the family, else say it
			b.WriteString(map[bool]string{true: " -inet", false: " -inet6"}[r.To.Addr().Is4()])
		}
	} else {
		b.WriteString(r.To.String())
	}
	if r.Via.IsValid() {
		b.WriteString(" " + r.Via.String())
	}
	if r.Interface != "" {
		b.WriteString(" -ifp " + r.Interface)
	}
	if r.Metric != 0 {
		fmt.Fprintf(&b, " -metric %d", r.Metric)
	}
	return b.String()
}

// parseRouteDest reads a destination word: "default", a prefix, or an
// address (a host route). v6 is the family when the word does not say
// (default); fam is 0 for unknown, 4 or 6.
func parseRouteDest(s string, fam int) (netip.Prefix, error) {
	if s == "default" {
		switch fam {
		case 4:
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
		case 6:
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
		}
		return netip.Prefix{}, errors.New(`"default" needs a gateway (which gives the family) or -inet/-inet6; or write 0.0.0.0/0 or ::/0`)
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped prefix; write it as IPv4", s)
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set beyond its prefix length; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" && !a.Is4In6() {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("%q is not a destination (default, 10.0.0.0/8, 2001:db8::/32 or an address)", s)
}

func parseGateway(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not a gateway address (like 192.168.1.254 or fd00::1)", s)
	}
	return a.Unmap(), nil
}

func famOf(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 6
}

// decode

func (d *decoder) route(p string, t map[string]any) Route {
	var r Route
	d.unknown(p, t, routeKeys)
	d.required(t, p, "to")
	var via string
	if d.str(t, p, "via", &via) {
		a, err := parseGateway(via)
		if err != nil {
			d.errorf(keyPath(p, "via"), "%v", err)
		}
		r.Via = a
	}
	var to string
	if d.str(t, p, "to", &to) {
		fam := 0
		if r.Via.IsValid() {
			fam = famOf(r.Via)
		}
		pfx, err := parseRouteDest(to, fam)
		if err != nil && !(to == "default" && d.reported(keyPath(p, "via"))) {
			d.errorf(keyPath(p, "to"), "%v", err)
		}
		r.To = pfx
	}
	var ifc, lg string
	hasIf := d.str(t, p, "interface", &ifc)
	hasLagg := d.str(t, p, "lagg", &lg)
	switch {
	case hasIf && hasLagg:
		d.errorf(keyPath(p, "lagg"), "give interface or lagg, not both (they mean the same)")
	case hasLagg:
		ifc = lg
	}
	r.Interface = ifc
	setInt(d, t, p, "metric", span{lo: 0, hi: math.MaxUint32}, &r.Metric)
	return r
}

// validate

// interfaceNames are the interfaces a route may name: the laggs and the
// VLAN interfaces.
func (c *Config) interfaceNames() []string {
	names := make([]string, 0, len(c.Laggs)+len(c.VLANs))
	for _, l := range c.Laggs {
		names = append(names, l.Name)
	}
	for _, v := range c.VLANs {
		names = append(names, v.Name)
	}
	return names
}

func (v *checker) routes(c *Config) {
	if len(c.Routes) > MaxRoutes {
		v.errorf("route", "%d routes; at most %d", len(c.Routes), MaxRoutes)
	}
	names := c.interfaceNames()
	for i, r := range c.Routes {
		p := indexPath("route", i)
		switch {
		case !r.To.IsValid():
			v.errorf(keyPath(p, "to"), "is missing or not a prefix")
			continue
		case r.To.Masked() != r.To:
			v.errorf(keyPath(p, "to"), "%s has bits set beyond its prefix length; did you mean %s?", r.To, r.To.Masked())
		case r.To.Addr().Is4In6():
			v.errorf(keyPath(p, "to"), "%s is an IPv4-mapped prefix; write it as IPv4", r.To)
		}
		if r.Via.IsValid() {
			switch {
			case r.Via.Is4() != r.To.Addr().Is4():
				v.errorf(keyPath(p, "via"), "gateway %s is IPv%d but the destination %s is IPv%d", r.Via, famOf(r.Via), r.To, famOf(r.To.Addr()))
			case r.Via.IsUnspecified() || r.Via.IsMulticast() || r.Via.IsLoopback() || r.Via == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
				v.errorf(keyPath(p, "via"), "%s cannot be a gateway", r.Via)
			case r.Via.Zone() != "":
				v.errorf(keyPath(p, "via"), "%s: write the interface as interface = \"...\", not as a zone", r.Via)
			case r.Via.Is6() && r.Via.IsLinkLocalUnicast() && r.Interface == "":
				v.errorf(keyPath(p, "via"), "gateway %s is link-local: name its interface (interface = \"lagg0\", or -ifp lagg0)", r.Via)
			}
		} else if r.Interface == "" {
			v.errorf(keyPath(p, "via"), "a route needs a gateway (via) or an interface it is on-link on")
		}
		if r.Interface != "" && !slices.Contains(names, r.Interface) {
			v.errorf(keyPath(p, "interface"), "no interface is named %q (interfaces: %s)", r.Interface, orNone(strings.Join(names, ", ")))
		}
		for j, o := range c.Routes[:i] {
			if o.Same(r) {
				v.errorf(keyPath(p, "to"), "duplicate of route[%d] (%s)", j, o)
				break
			}
		}
	}
}

// marshal

func (w *writer) route(r Route) {
	w.table("[[route]]")
	if r.IsDefault() && r.Via.IsValid() {
		w.str("to", "default")
	} else {
		w.str("to", r.To.String())
	}
	if r.Via.IsValid() {
		w.str("via", r.Via.String())
	}
	if r.Interface != "" {
		w.str("interface", r.Interface)
	}
	if r.Metric != 0 {
		w.int("metric", int64(r.Metric))
	}
}

// diff

// ItemRoute is a static route; Name is the route in route(8) words
// without its metric, Old and New "metric N".
const ItemRoute = "route"

func routeName(r Route) string {
	r.Metric = 0
	return r.String()
}

func routeItems(old, new *Config) []Item {
	var out []Item
	for _, o := range old.Routes {
		if !slices.ContainsFunc(new.Routes, o.Same) {
			out = append(out, Item{Kind: ItemRoute, Name: routeName(o), Old: metricWord(o.Metric)})
		}
	}
	for _, n := range new.Routes {
		i := slices.IndexFunc(old.Routes, n.Same)
		switch {
		case i < 0:
			out = append(out, Item{Kind: ItemRoute, Name: routeName(n), New: metricWord(n.Metric)})
		case old.Routes[i].Metric != n.Metric:
			out = append(out, Item{Kind: ItemRoute, Name: routeName(n), Old: metricWord(old.Routes[i].Metric), New: metricWord(n.Metric)})
		}
	}
	return out
}

func metricWord(m uint32) string { return "metric " + strconv.FormatUint(uint64(m), 10) }

func routeItemString(it Item) string {
	switch {
	case it.Old == "":
		return fmt.Sprintf("route %s added (%s)", it.Name, it.New)
	case it.New == "":
		return fmt.Sprintf("route %s removed", it.Name)
	}
	return fmt.Sprintf("route %s: %s -> %s", it.Name, it.Old, it.New)
}

// RoutesEqual reports whether a and b have the same static routes, in any
// order. A nil config counts as empty.
func RoutesEqual(a, b *Config) bool {
	if a == nil {
		a = &Config{}
	}
	if b == nil {
		b = &Config{}
	}
	return len(a.Routes) == len(b.Routes) && len(routeItems(a, b)) == 0
}

// The route(8) command.

// Route command verbs.
const (
	RouteAdd    = "add"
	RouteDelete = "delete"
	RouteShow   = "show"
)

// RouteCommand is one `ulagg route` line.
type RouteCommand struct {
	Op    string // RouteAdd, RouteDelete or RouteShow
	Route Route  // add, delete: Via and Interface may be unset for delete
	// Family restricts show (and says what "default" means): 0, 4 or 6.
	Family int
}

// ParseRoute parses NetBSD route(8) words:
//
//	add|delete [-net|-host] [-inet|-inet6] DEST [GATEWAY] [-netmask MASK|-prefixlen N] [-ifp IF] [-metric N]
//	show [-inet|-inet6]
//
// DEST is default, a prefix (10.0.0.0/8), or an address (a host route, or
// a network with -netmask/-prefixlen). "delete" is also spelt "del".
func ParseRoute(args []string) (*RouteCommand, error) {
	if len(args) == 0 {
		return nil, errors.New("route: missing command (add, delete or show)")
	}
	cmd := &RouteCommand{}
	switch args[0] {
	case "add":
		cmd.Op = RouteAdd
	case "delete", "del":
		cmd.Op = RouteDelete
	case "show", "list", "get":
		cmd.Op = RouteShow
	default:
		return nil, fmt.Errorf("route: unknown command %q (add, delete or show)", args[0])
	}
	var (
		dest, gw, mask, plen string
		host, net            bool
		pos                  []string
	)
	for k := 1; k < len(args); k++ {
		w := args[k]
		value := func() (string, error) {
			if k+1 >= len(args) {
				return "", fmt.Errorf("route: %s needs a value", w)
			}
			k++
			return args[k], nil
		}
		var err error
		switch w {
		case "-inet":
			cmd.Family = 4
		case "-inet6":
			cmd.Family = 6
		case "-net":
			net = true
		case "-host":
			host = true
		case "-netmask":
			mask, err = value()
		case "-prefixlen":
			plen, err = value()
		case "-ifp":
			cmd.Route.Interface, err = value()
		case "-metric":
			var s string
			if s, err = value(); err == nil {
				n, perr := strconv.ParseUint(s, 10, 32)
				if perr != nil {
					return nil, fmt.Errorf("route: -metric %q is not a number 0..%d", s, uint32(math.MaxUint32))
				}
				cmd.Route.Metric = uint32(n)
			}
		default:
			if strings.HasPrefix(w, "-") {
				return nil, fmt.Errorf("route: unknown option %q", w)
			}
			pos = append(pos, w)
		}
		if err != nil {
			return nil, err
		}
	}
	if cmd.Op == RouteShow {
		if len(pos) > 0 || net || host || mask != "" || plen != "" || cmd.Route.Interface != "" || cmd.Route.Metric != 0 {
			return nil, errors.New("route show takes only -inet or -inet6")
		}
		return cmd, nil
	}
	switch len(pos) {
	case 0:
		return nil, fmt.Errorf("route %s: missing destination", cmd.Op)
	case 1:
		dest = pos[0]
	case 2:
		dest, gw = pos[0], pos[1]
	default:
		return nil, fmt.Errorf("route %s: unexpected %q (one destination and one gateway)", cmd.Op, pos[2])
	}
	if host && net {
		return nil, errors.New("route: -host and -net together")
	}
	if gw != "" {
		a, err := parseGateway(gw)
		if err != nil {
			return nil, fmt.Errorf("route: %w", err)
		}
		if cmd.Family != 0 && famOf(a) != cmd.Family {
			return nil, fmt.Errorf("route: gateway %s is not IPv%d", a, cmd.Family)
		}
		cmd.Route.Via = a
		if cmd.Family == 0 {
			cmd.Family = famOf(a)
		}
	}
	to, err := parseRouteDest(dest, cmd.Family)
	if err != nil {
		return nil, fmt.Errorf("route: %w", err)
	}
	if mask != "" || plen != "" {
		if dest == "default" || to.Bits() != to.Addr().BitLen() || host {
			return nil, errors.New("route: -netmask and -prefixlen go with a bare network address (10.0.0.0 -netmask 255.0.0.0)")
		}
		bits, err := maskBits(mask, plen, to.Addr())
		if err != nil {
			return nil, err
		}
		to = netip.PrefixFrom(to.Addr(), bits)
		if to.Masked() != to {
			return nil, fmt.Errorf("route: %s has bits set beyond its prefix length; did you mean %s?", to, to.Masked())
		}
	} else if net && dest != "default" && to.Bits() == to.Addr().BitLen() {
		return nil, fmt.Errorf("route: -net %s needs a prefix length (%s/N) or -netmask", dest, dest)
	}
	if host && to.Bits() != to.Addr().BitLen() {
		return nil, fmt.Errorf("route: -host %s is a network", dest)
	}
	if cmd.Family != 0 && famOf(to.Addr()) != cmd.Family {
		return nil, fmt.Errorf("route: %s is not IPv%d", dest, cmd.Family)
	}
	cmd.Family = famOf(to.Addr())
	cmd.Route.To = to
	if cmd.Op == RouteAdd && !cmd.Route.Via.IsValid() && cmd.Route.Interface == "" {
		return nil, fmt.Errorf("route add %s: give a gateway, or -ifp IF for an on-link route", dest)
	}
	return cmd, nil
}

// maskBits turns -netmask MASK or -prefixlen N into a prefix length for
// addresses like a.
func maskBits(mask, plen string, a netip.Addr) (int, error) {
	if plen != "" {
		n, err := strconv.Atoi(plen)
		if err != nil || n < 0 || n > a.BitLen() {
			return 0, fmt.Errorf("route: -prefixlen %q is not 0..%d", plen, a.BitLen())
		}
		return n, nil
	}
	m, err := netip.ParseAddr(mask)
	if err != nil || m.BitLen() != a.BitLen() {
		return 0, fmt.Errorf("route: -netmask %q is not a netmask for %s", mask, a)
	}
	b := m.AsSlice()
	bits := 0
	for bits < len(b)*8 && b[bits/8]&(0x80>>(bits%8)) != 0 {
		bits++
	}
	for k := bits; k < len(b)*8; k++ {
		if b[k/8]&(0x80>>(k%8)) != 0 {
			return 0, fmt.Errorf("route: -netmask %s is not contiguous", mask)
		}
	}
	return bits, nil
}

// String is the command in route(8) words.
func (c *RouteCommand) String() string {
	if c.Op == RouteShow {
		switch c.Family {
		case 4:
			return "show -inet"
		case 6:
			return "show -inet6"
		}
		return "show"
	}
	return c.Op + " " + c.Route.String()
}

// Apply returns a copy of c with the command applied, validated: add
// refuses a route that exists (whatever its metric), delete one that does
// not. A delete without gateway or interface removes every static route
// to the destination.
func (cmd *RouteCommand) Apply(c *Config) (*Config, error) {
	next := c.Clone()
	r := cmd.Route
	switch cmd.Op {
	case RouteAdd:
		if i := slices.IndexFunc(next.Routes, r.Same); i >= 0 {
			return nil, fmt.Errorf("route add %s: the route exists (route delete first to change it)", routeName(r))
		}
		next.Routes = append(next.Routes, r)
	case RouteDelete:
		n := len(next.Routes)
		next.Routes = slices.DeleteFunc(next.Routes, func(o Route) bool {
			return o.To == r.To && (!r.Via.IsValid() || o.Via == r.Via) && (r.Interface == "" || o.Interface == r.Interface)
		})
		if len(next.Routes) == n {
			return nil, fmt.Errorf("route delete %s: no such static route", routeName(r))
		}
	default:
		return nil, fmt.Errorf("route %s: changes nothing", cmd.Op)
	}
	if err := next.Validate(); err != nil {
		return nil, err
	}
	return next, nil
}
