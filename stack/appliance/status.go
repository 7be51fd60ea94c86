package appliance

import (
	"encoding/json"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

// The JSON status (`ulagg ifconfig --json`, the http-status service,
// json.Marshal of a LaggStatus) is the lagg's own (lagg.StatusJSON, whose
// file states the conventions every JSON object follows) plus what the
// appliance knows: interface flags, admin state, addresses, missing ports
// and, with -v, the lacp options and the stack's drops. schema/ holds the
// JSON Schema; docs/json.md is checked against it.

// LaggJSON is a lagg's status as scripts read it.
type LaggJSON struct {
	lagg.StatusJSON
	Flags     lagg.Bits `json:"flags"` // interface flags: UP, RUNNING, ...
	AdminUp   bool      `json:"admin_up"`
	Addresses []string  `json:"addresses"`
	// Ports replaces StatusJSON's (the shallower field wins in
	// encoding/json): the attached ports, then the missing ones.
	Ports []PortJSON `json:"ports"`
	// With -v: the lacp options in force, the IP stack's drop counters
	// that are not zero, and the frames captures dropped (left out while
	// zero). The drops are the whole appliance's, not this lagg's: the
	// stack is shared.
	LACPOptions  *LACPOptionsJSON  `json:"lacp_options,omitempty"`
	StackDrops   map[string]uint64 `json:"stack_drops,omitempty"`
	CaptureDrops uint64            `json:"capture_drops,omitempty"`
	// The IPv6 link-local address (fe80::…%lagg0/64) and scope ID, and
	// the DHCP client (dhcp.go); left out when there is none.
	LinkLocal string    `json:"link_local,omitempty"`
	Autoconf  []string  `json:"autoconf,omitempty"` // SLAAC's addresses (slaac.go)
	ScopeID   uint32    `json:"scope_id,omitempty"`
	DHCP      *DHCPJSON `json:"dhcp,omitempty"`
}

// PortJSON is one port's status.
type PortJSON struct {
	lagg.PortStatusJSON
	// Missing: the port is configured but its interface does not exist;
	// it is attached when it appears. Reason says what opening it said.
	Missing bool   `json:"missing,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// LACPOptionsJSON are a lacp lagg's configured options (-v).
type LACPOptionsJSON struct {
	MaxPorts int       `json:"max_ports"`
	MinPorts int       `json:"min_ports"`
	Rate     string    `json:"rate"`
	Mode     string    `json:"mode"`
	Fallback bool      `json:"fallback"`
	Select   string    `json:"select"`
	Flags    lagg.Bits `json:"flags"` // NetBSD's lacp flags: MULTILS
}

// StatusJSON converts statuses to their JSON form, without -v's detail.
func StatusJSON(sts []LaggStatus) []LaggJSON {
	out := make([]LaggJSON, 0, len(sts))
	for _, st := range sts {
		out = append(out, st.JSON(false))
	}
	return out
}

// ifFlagBits names the interface flags by bit for lagg.MakeBits.
var ifFlagBits = func() []string {
	names := make([]string, 16)
	for _, n := range ifFlagNames {
		for i := range names {
			if n.bit == 1<<i {
				names[i] = n.name
			}
		}
	}
	return names
}()

// JSON returns st as JSON; verbose adds the ports' LACP state and the
// aggregators (lagg.Status.JSON).
func (st LaggStatus) JSON(verbose bool) LaggJSON {
	j := LaggJSON{
		StatusJSON: st.Status.JSON(verbose),
		Flags:      lagg.MakeBits(IfFlags(st), ifFlagBits),
		AdminUp:    st.AdminUp,
		Addresses:  make([]string, 0, len(st.Addresses)),
		Ports:      make([]PortJSON, 0, len(st.Ports)+len(st.Missing)),
	}
	for _, p := range j.StatusJSON.Ports {
		j.Ports = append(j.Ports, PortJSON{PortStatusJSON: p})
	}
	j.StatusJSON.Ports = nil
	for _, a := range st.Addresses {
		j.Addresses = append(j.Addresses, a.String())
	}
	if st.LinkLocal.IsValid() {
		j.LinkLocal = linkLocalString(st.LinkLocal, st.Name)
		j.ScopeID = uint32(st.NIC)
	}
	if st.DHCP != nil {
		j.DHCP = st.DHCP.JSON()
	}
	for _, p := range st.Autoconf {
		j.Autoconf = append(j.Autoconf, p.String())
	}
	for _, m := range st.Missing {
		j.Ports = append(j.Ports, PortJSON{
			PortStatusJSON: lagg.PortStatusJSON{Name: m.Name, Priority: m.Priority, Link: "missing"},
			Missing:        true, Reason: m.Reason,
		})
	}
	return j
}

// MarshalJSON implements json.Marshaler: the verbose form, as far as st
// knows it (no lacp options or stack drops: those are the appliance's).
// Without it, the embedded lagg.Status's would drop the addresses.
func (st LaggStatus) MarshalJSON() ([]byte, error) { return json.Marshal(st.JSON(true)) }

// addVerbose adds -v's appliance-wide detail to j: lc's lacp options,
// the stack's drops and the captures'.
func (a *Appliance) addVerbose(j *LaggJSON, lc *config.Lagg) {
	if lc != nil && lc.Proto == config.ProtoLACP {
		var flags uint32
		if lc.LACP.MultiSpeed {
			flags |= lacpMultiLS
		}
		sel := lc.LACP.Select
		if sel == "" {
			sel = "stable"
		}
		j.LACPOptions = &LACPOptionsJSON{
			MaxPorts: lc.LACP.MaxPorts, MinPorts: lc.LACP.MinPorts, Rate: lc.LACP.Rate, Mode: lc.LACP.Mode,
			Fallback: lc.LACP.Fallback, Select: sel,
			Flags: lagg.MakeBits(flags, []string{3: "MULTILS"}),
		}
	}
	stackDrops, captureDrops := a.Drops()
	j.StackDrops = map[string]uint64{}
	for _, d := range stackDrops {
		if d.Value != 0 {
			j.StackDrops[d.Name] = d.Value
		}
	}
	j.CaptureDrops = captureDrops
}
