package config

import (
	"net/netip"
	"strings"
)

// Address words: next to its prefixes, a lagg's addresses may hold "dhcp",
// which runs a DHCPv4 client on it (Lagg.DHCP), and "slaac", which makes
// it take IPv6 addresses and routers from router advertisements
// (Lagg.SLAAC): addresses = ["dhcp", "slaac"].
const (
	AddrDHCP  = "dhcp"
	AddrSLAAC = "slaac"
)

// ItemSLAAC is a lagg's SLAAC turned on or off; Old and New are "on" or
// "off".
const ItemSLAAC = "slaac"

// ItemDHCP is a lagg's DHCP client turned on or off; Old and New are "on"
// or "off".
const ItemDHCP = "dhcp"

// unsupportedAddrWords are address words of other systems that ulagg does
// not have, with what to do instead.
var unsupportedAddrWords = map[string]string{
	"dhcp6": "DHCPv6 is not supported; give the IPv6 prefix, or rely on the link-local address",
	"auto":  "write dhcp for a DHCPv4 client",
}

// addressWord handles entry i of an addresses list that is a word rather
// than a prefix, setting *dhcp or *slaac (nil: the interface cannot have
// it); it reports whether s was a word.
func (d *decoder) addressWord(dhcp, slaac *bool, key string, i int, s string) bool {
	w := strings.ToLower(s)
	flag := map[string]*bool{AddrDHCP: dhcp, AddrSLAAC: slaac}
	if f, ok := flag[w]; ok {
		switch {
		case f == nil:
			d.errorf(indexPath(key, i), "%q is not supported here (a lagg's addresses only)", s)
		case *f:
			d.errorf(indexPath(key, i), "%q is given twice", s)
		default:
			*f = true
		}
		return true
	}
	if why, ok := unsupportedAddrWords[w]; ok {
		d.errorf(indexPath(key, i), "%q: %s", s, why)
		return true
	}
	return false
}

// addressList decodes an addresses list of prefixes and address words
// (setting *dhcp); a bad entry stays as an invalid Prefix so that later
// entries keep their index, as prefixes does.
func (d *decoder) addressList(t map[string]any, p, k string, dhcp *bool) []netip.Prefix {
	strs, _ := d.strs(t, p, k)
	var out []netip.Prefix
	for i, s := range strs {
		if d.addressWord(dhcp, nil, keyPath(p, k), i, s) {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil && !d.reported(indexPath(keyPath(p, k), i)) {
			d.errorf(indexPath(keyPath(p, k), i), "%q is not an address/prefix-length (like 192.0.2.1/24 or 2001:db8::1/64)", s)
		}
		out = append(out, pfx)
	}
	return out
}

// addressWords is an addresses list as the configuration file writes it:
// "dhcp" and "slaac" first when set, then the prefixes.
func addressWords(dhcp bool, addrs []netip.Prefix, slaac ...bool) []string {
	var a []string
	if dhcp {
		a = append(a, AddrDHCP)
	}
	if len(slaac) > 0 && slaac[0] {
		a = append(a, AddrSLAAC)
	}
	for _, p := range addrs {
		a = append(a, p.String())
	}
	return a
}

// dhcpItems is the ItemDHCP item of lagg name if its DHCP client is turned
// on or off between was and is.
func dhcpItems(name string, was, is bool) []Item { return flagItems(name, ItemDHCP, was, is) }

// flagItems is the item of kind (ItemDHCP, ItemSLAAC) if it changed.
func flagItems(name, kind string, was, is bool) []Item {
	if was == is {
		return nil
	}
	return []Item{{Lagg: name, Kind: kind, Name: kind, Old: onOff(was), New: onOff(is)}}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// dhcpOp parses the DHCP words of ulagg ifconfig: `inet dhcp`, `inet
// -dhcp`, or `dhcp`/`-dhcp` alone. NetBSD runs dhcpcd(8) for this; ulagg
// has its client built in, so the words turn it on and off.
func dhcpOp(w string) (ifOp, bool) {
	switch strings.ToLower(w) {
	case "dhcp":
		return ifOp{verb: "dhcp", on: true}, true
	case "-dhcp":
		return ifOp{verb: "dhcp", on: false}, true
	}
	return ifOp{}, false
}

// slaacOp parses `inet6 slaac` and `inet6 -slaac` (also FreeBSD's
// accept_rtadv and -accept_rtadv).
func slaacOp(w string) (ifOp, bool) {
	switch strings.ToLower(w) {
	case "slaac", "accept_rtadv":
		return ifOp{verb: "slaac", on: true}, true
	case "-slaac", "-accept_rtadv":
		return ifOp{verb: "slaac", on: false}, true
	}
	return ifOp{}, false
}
