package config

import (
	"cmp"
	"slices"
)

// Change operations reported by Diff.
const (
	OpAddLagg    = "add-lagg"
	OpRemoveLagg = "remove-lagg"
	OpUpdateLagg = "update-lagg"
)

// Change is one lagg-level difference between two configs. Old is nil for
// add-lagg and New is nil for remove-lagg; both point into the configs
// given to Diff.
type Change struct {
	Lagg     string
	Op       string
	Old, New *Lagg
}

// Diff returns the lagg changes that turn old into new: removals first (in
// old's order), then updates and additions (in new's order), so that ports
// and addresses freed by a removal are available to what follows. A port
// moving between two updated laggs still needs the applier to release
// before it acquires. A nil config counts as empty. Control, metrics and
// services are compared separately (see ServicesEqual).
func Diff(old, new *Config) []Change {
	if old == nil {
		old = &Config{}
	}
	if new == nil {
		new = &Config{}
	}
	var out []Change
	for i := range old.Laggs {
		o := &old.Laggs[i]
		if new.Lagg(o.Name) == nil {
			out = append(out, Change{Lagg: o.Name, Op: OpRemoveLagg, Old: o})
		}
	}
	for i := range new.Laggs {
		n := &new.Laggs[i]
		if o := old.Lagg(n.Name); o != nil && !laggEqual(o, n) {
			out = append(out, Change{Lagg: n.Name, Op: OpUpdateLagg, Old: o, New: n})
		}
	}
	for i := range new.Laggs {
		n := &new.Laggs[i]
		if old.Lagg(n.Name) == nil {
			out = append(out, Change{Lagg: n.Name, Op: OpAddLagg, New: n})
		}
	}
	return out
}

// laggEqual compares field by field so that nil and empty lists are equal.
func laggEqual(a, b *Lagg) bool {
	return a.Name == b.Name && a.Proto == b.Proto &&
		slices.Equal(a.Addresses, b.Addresses) &&
		a.MTU == b.MTU && slices.Equal(a.MAC, b.MAC) &&
		slices.Equal(a.Hash, b.Hash) &&
		a.UpDelay == b.UpDelay && a.DownDelay == b.DownDelay && a.Down == b.Down &&
		a.Failover == b.Failover && a.LACP == b.LACP && a.RoundRobin == b.RoundRobin &&
		slices.Equal(a.Ports, b.Ports)
}

// ServicesEqual reports whether a and b configure the same set of services,
// in any order. A nil config counts as empty.
func ServicesEqual(a, b *Config) bool {
	return slices.Equal(sortedServices(a), sortedServices(b))
}

func sortedServices(c *Config) []Service {
	if c == nil {
		return nil
	}
	s := slices.Clone(c.Services)
	slices.SortFunc(s, func(x, y Service) int {
		return cmp.Or(cmp.Compare(x.Kind, y.Kind), cmp.Compare(x.Port, y.Port), cmp.Compare(x.Lagg, y.Lagg))
	})
	return s
}
