package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// VLAN is one [[vlan]]: an 802.1Q VLAN interface on top of a lagg,
// NetBSD's `ifconfig vlan100 vlan 100 vlanif lagg0`. It is a top-level
// table naming its parent, rather than a table inside [[lagg]], because a
// VLAN is an interface of its own (its own addresses and services, named
// by services and routes like a lagg) and, as in NetBSD, may exist before
// it has a parent: `ifconfig vlan100 create` makes one with neither ID nor
// parent, which carries nothing until `vlan N vlanif IF` is given.
type VLAN struct {
	Name      string // vlanN
	ID        uint16 // 1..4094; 0 with no parent
	Parent    string // the lagg; "" = none yet
	Addresses []netip.Prefix
	DHCP      bool // "dhcp" in addresses: a DHCPv4 client on the VLAN (dhcp.go)
}

// Attached reports whether the VLAN has an ID and a parent: only then does
// it run (a NIC with its addresses).
func (v *VLAN) Attached() bool { return v.Parent != "" && v.ID != 0 }

// Words are the VLAN's ID and parent in ifconfig words: "vlan 100 vlanif
// lagg0", or "-vlanif" when it has none.
func (v *VLAN) Words() string {
	if !v.Attached() {
		return "-vlanif"
	}
	return fmt.Sprintf("vlan %d vlanif %s", v.ID, v.Parent)
}

// VLAN ID bounds (IEEE 802.1Q: 0 is a priority tag, 4095 reserved).
const (
	MinVLANID = 1
	MaxVLANID = 4094
)

var (
	spanVLANID = span{lo: MinVLANID, hi: MaxVLANID}
	vlanKeys   = []string{"name", "id", "parent", "addresses"}
)

// VLAN returns the VLAN called name, or nil. The pointer aliases c.VLANs.
func (c *Config) VLAN(name string) *VLAN {
	if c == nil {
		return nil
	}
	for i := range c.VLANs {
		if c.VLANs[i].Name == name {
			return &c.VLANs[i]
		}
	}
	return nil
}

// HasInterface reports whether name is a lagg or a VLAN of c: what a
// service or a route may name.
func (c *Config) HasInterface(name string) bool { return c.Lagg(name) != nil || c.VLAN(name) != nil }

func cloneVLANs(vs []VLAN) []VLAN {
	if vs == nil {
		return nil
	}
	out := make([]VLAN, len(vs))
	for i, v := range vs {
		out[i] = v
		out[i].Addresses = slices.Clone(v.Addresses)
	}
	return out
}

// IsVLANName reports whether s is a VLAN interface name: "vlan" and a
// decimal number (NetBSD's vlan cloner), at most 15 bytes.
func IsVLANName(s string) bool { return clonerName(s, "vlan") }

// IsLaggName reports whether s is a lagg cloner name, "lagg" and a number.
func IsLaggName(s string) bool { return clonerName(s, "lagg") }

func clonerName(s, prefix string) bool {
	n, ok := strings.CutPrefix(s, prefix)
	if !ok || n == "" || len(s) > 15 || (len(n) > 1 && n[0] == '0') {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 32)
	return err == nil
}

// vlan decodes one [[vlan]] table.
func (d *decoder) vlan(p string, t map[string]any) VLAN {
	var v VLAN
	d.unknown(p, t, vlanKeys)
	d.required(t, p, "name")
	d.str(t, p, "name", &v.Name)
	setInt(d, t, p, "id", spanVLANID, &v.ID)
	d.str(t, p, "parent", &v.Parent)
	v.Addresses = d.addressList(t, p, "addresses", &v.DHCP) // prefixes and the dhcp word (dhcp.go)
	return v
}

// vlans checks the [[vlan]] tables against each other and the laggs, and
// that no lagg takes a VLAN's name.
func (v *checker) vlans(c *Config) {
	for i, l := range c.Laggs {
		if IsVLANName(l.Name) {
			v.errorf(keyPath(indexPath("lagg", i), "name"), "%q is a VLAN interface name; declare it as a [[vlan]] (a lagg is named like lagg0)", l.Name)
		}
	}
	for i := range c.VLANs {
		vl := &c.VLANs[i]
		p := indexPath("vlan", i)
		np := keyPath(p, "name")
		switch {
		case !IsVLANName(vl.Name):
			v.errorf(np, "%q is not a VLAN interface name: want vlan and a number, like vlan100", vl.Name)
		case c.Lagg(vl.Name) != nil:
			v.errorf(np, "%q is also a lagg", vl.Name)
		default:
			if j := slices.IndexFunc(c.VLANs[:i], func(o VLAN) bool { return o.Name == vl.Name }); j >= 0 {
				v.errorf(np, "vlan %q is already defined by vlan[%d]", vl.Name, j)
			}
		}
		switch {
		case vl.Parent == "" && vl.ID != 0:
			v.errorf(keyPath(p, "parent"), "id %d is given without a parent: give both (vlan %d vlanif lagg0) or neither", vl.ID, vl.ID)
		case vl.Parent == "":
		case vl.ID == 0:
			v.errorf(keyPath(p, "id"), "required with a parent: the VLAN ID, %d..%d", MinVLANID, MaxVLANID)
		case c.Lagg(vl.Parent) == nil:
			v.errorf(keyPath(p, "parent"), "no lagg is named %q (a VLAN's parent is a lagg)", vl.Parent)
		default:
			v.inSpan(keyPath(p, "id"), int64(vl.ID), spanVLANID)
			if j := slices.IndexFunc(c.VLANs[:i], func(o VLAN) bool { return o.Parent == vl.Parent && o.ID == vl.ID }); j >= 0 {
				v.errorf(keyPath(p, "id"), "VLAN %d on %s is already vlan[%d] (%s)", vl.ID, vl.Parent, j, c.VLANs[j].Name)
			}
		}
		v.addresses(keyPath(p, "addresses"), vl.Addresses)
	}
}

// vlan writes one [[vlan]] table.
func (w *writer) vlan(v *VLAN) {
	w.table("[[vlan]]")
	w.str("name", v.Name)
	if v.ID != 0 {
		w.int("id", int64(v.ID))
	}
	if v.Parent != "" {
		w.str("parent", v.Parent)
	}
	if a := addressWords(v.DHCP, v.Addresses); len(a) > 0 { // dhcp.go
		w.strs("addresses", a)
	}
}

// ItemVLAN is a VLAN interface created, destroyed or given another ID or
// parent; Old and New are its Words ("" when absent). Its address changes
// are ItemAddress items whose Lagg is the VLAN's name.
const ItemVLAN = "vlan"

// vlanItems lists what differs between the VLANs of old and new: removals
// (old's order), then changes and additions (new's order), each VLAN's
// addresses after it.
func vlanItems(old, new *Config) []Item {
	if old == nil {
		old = &Config{}
	}
	if new == nil {
		new = &Config{}
	}
	var out []Item
	for i := range old.VLANs {
		o := &old.VLANs[i]
		if new.VLAN(o.Name) == nil {
			out = append(out, Item{Lagg: o.Name, Kind: ItemVLAN, Name: o.Name, Old: o.Words()})
		}
	}
	for i := range new.VLANs {
		n := &new.VLANs[i]
		o := old.VLAN(n.Name)
		var was []netip.Prefix
		switch {
		case o == nil:
			out = append(out, Item{Lagg: n.Name, Kind: ItemVLAN, Name: n.Name, New: n.Words()})
		case o.Words() != n.Words():
			out = append(out, Item{Lagg: n.Name, Kind: ItemVLAN, Name: n.Name, Old: o.Words(), New: n.Words()})
			was = o.Addresses
		default:
			was = o.Addresses
		}
		out = append(out, addressItems(n.Name, was, n.Addresses)...)
		out = append(out, dhcpItems(n.Name, o != nil && o.DHCP, n.DHCP)...) // dhcp.go
	}
	return out
}

// addressItems lists the address differences of interface name, keyed by
// the address (a new prefix length for the same address is one change).
func addressItems(name string, o, n []netip.Prefix) []Item {
	var out []Item
	for _, p := range o {
		if !slices.ContainsFunc(n, func(q netip.Prefix) bool { return q.Addr() == p.Addr() }) {
			out = append(out, Item{Lagg: name, Kind: ItemAddress, Name: p.Addr().String(), Old: p.String(), OldAddr: p})
		}
	}
	for _, p := range n {
		i := slices.IndexFunc(o, func(q netip.Prefix) bool { return q.Addr() == p.Addr() })
		switch {
		case i < 0:
			out = append(out, Item{Lagg: name, Kind: ItemAddress, Name: p.Addr().String(), New: p.String(), NewAddr: p})
		case o[i] != p:
			out = append(out, Item{Lagg: name, Kind: ItemAddress, Name: p.Addr().String(), Old: o[i].String(), New: p.String(), OldAddr: o[i], NewAddr: p})
		}
	}
	return out
}

// vlanItemString words an ItemVLAN (after "vlanN: ").
func vlanItemString(it Item) string {
	switch {
	case it.Old == "":
		return "created (" + it.New + ")"
	case it.New == "":
		return "destroyed"
	}
	return it.Old + " -> " + it.New
}

// VLANEqual reports whether a and b configure the same VLAN.
func VLANEqual(a, b *VLAN) bool {
	return a.Name == b.Name && a.Words() == b.Words() && len(addressItems(a.Name, a.Addresses, b.Addresses)) == 0 && a.DHCP == b.DHCP
}

// ifaceKind is "vlan" for a VLAN interface name, else "lagg".
func ifaceKind(name string) string {
	if IsVLANName(name) {
		return "vlan"
	}
	return "lagg"
}
