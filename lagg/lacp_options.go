package lagg

import (
	"fmt"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// LACPOptions are the lacp protocol's settings ([lagg.lacp] in the config).
type LACPOptions struct {
	MultiSpeed     bool   // aggregate ports of different speeds
	MaxPorts       int    // 1..16 ports selected, the rest STANDBY
	FastRate       bool   // ask the partner for PDUs every second (short timeout)
	Passive        bool   // speak only when spoken to
	SystemPriority uint16 // default 32768
	Key            uint16 // 0: derived from the lagg
	MinPorts       int    // the lagg is down with fewer distributing ports
	// Fallback: with no partner on any port, every port with link up
	// collects and the lagg transmits on the one where the partner's
	// traffic arrives (ports that hear our own LACPDUs excepted).
	Fallback bool
	// Select is the aggregator selection policy when ports see more than
	// one partner: stable ("" too), bandwidth or count.
	Select LACPSelect
}

// LACPSelect is an aggregator selection policy (Linux bonding's ad_select).
type LACPSelect string

// The selection policies.
const (
	// LACPSelectStable keeps the active aggregator while it has ports;
	// only then is another chosen (by bandwidth). The default.
	LACPSelectStable LACPSelect = "stable"
	// LACPSelectBandwidth makes the aggregator with the highest total
	// speed active, at every change.
	LACPSelectBandwidth LACPSelect = "bandwidth"
	// LACPSelectCount makes the aggregator with the most ports active, at
	// every change.
	LACPSelectCount LACPSelect = "count"
)

// policy returns the engine's policy; "" is stable.
func (s LACPSelect) policy() (lacp.SelectPolicy, error) {
	if s == "" {
		return lacp.SelectStable, nil
	}
	return lacp.ParseSelectPolicy(string(s))
}

// DefaultLACPOptions are NetBSD's defaults.
func DefaultLACPOptions() LACPOptions {
	return LACPOptions{MultiSpeed: true, MaxPorts: 16, SystemPriority: 32768, MinPorts: 1, Select: LACPSelectStable}
}

func (o LACPOptions) validate() error {
	if o.MaxPorts < 1 || o.MaxPorts > 16 {
		return fmt.Errorf("lacp max ports %d out of range 1..16", o.MaxPorts)
	}
	if o.MinPorts < 1 || o.MinPorts > o.MaxPorts {
		return fmt.Errorf("lacp min ports %d out of range 1..%d (max ports)", o.MinPorts, o.MaxPorts)
	}
	if o.SystemPriority == 0 {
		return fmt.Errorf("lacp system priority must be 1..65535")
	}
	if _, err := o.Select.policy(); err != nil {
		return fmt.Errorf("lacp select %q: want stable, bandwidth or count", o.Select)
	}
	return nil
}

// LACPStatus is the lacp protocol's state of the lagg: the actor, the
// active aggregator and its partner, the aggregators.
type LACPStatus = lacp.Status

// LACPPortStatus is one port's LACP state: actor and partner information,
// mux and receive machine states, selection and PDU counters.
type LACPPortStatus = lacp.PortStatus
