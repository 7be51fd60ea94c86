package lagg

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/ulagg/ulagg/lagg/lacp"
)

// The JSON form of status and events. One set of conventions holds for
// every object ulagg prints as JSON (status, events, routes, capture
// metadata); stack/appliance/schema/*.schema.json states them as JSON
// Schema and docs/json.md documents them:
//
//   - Keys are snake_case, given by json tags on the Go types, so that
//     json.Marshal of a Go status or event prints what `ulagg ifconfig
//     --json` and `ulagg monitor --json` print.
//   - MAC addresses are strings "aa:bb:cc:dd:ee:ff" ("" when there is
//     none); IP addresses and prefixes are strings ("192.168.1.1/24").
//   - Bit sets (port flags, interface flags, LACP states) are an object
//     {"value": 28, "names": ["ACTIVE", ...]} (Bits): the number as
//     NetBSD's ifconfig prints it, and the names of the bits set ([] when
//     none is).
//   - Durations are milliseconds, a number, in a key ending in _ms; times
//     are RFC 3339 strings with nanoseconds.
//   - Counters are unsigned integers; maps and lists are {} and [], never
//     null. A block that does not apply (lacp for a failover lagg) is left
//     out, never null.
//   - Detail that `ifconfig -v` adds to the text is left out of the JSON
//     without -v too (JSON(false)); json.Marshal of a Go status is the
//     verbose form.
//
// Adding a status field: give it a json tag by these rules, add it to
// stack/appliance/schema/status.schema.json (with a description; -v only
// fields say "verbose"), and run `go test ./stack/appliance -run TestJSON
// -update`, which rewrites the golden files and docs/json.md.

// Bits is a bit set as JSON: its value and the names of the bits set.
type Bits struct {
	Value uint32   `json:"value"`
	Names []string `json:"names"`
}

// MakeBits returns v's Bits; names[i] names bit 1<<i ("" for bits with no
// name, which are left out of Names).
func MakeBits(v uint32, names []string) Bits {
	b := Bits{Value: v, Names: []string{}}
	for i, n := range names {
		if n != "" && v&(1<<i) != 0 {
			b.Names = append(b.Names, n)
		}
	}
	return b
}

// String formats b as NetBSD's snprintb: "0x1c<ACTIVE,COLLECTING>", or
// "0x0".
func (b Bits) String() string {
	if len(b.Names) == 0 {
		return fmt.Sprintf("0x%x", b.Value)
	}
	return fmt.Sprintf("0x%x<%s>", b.Value, strings.Join(b.Names, ","))
}

// Bits returns f as a bit set.
func (f PortFlags) Bits() Bits { return MakeBits(uint32(f), portFlagNames) }

// MarshalJSON implements json.Marshaler: {"value": n, "names": [...]}.
func (f PortFlags) MarshalJSON() ([]byte, error) { return json.Marshal(f.Bits()) }

// UnmarshalJSON implements json.Unmarshaler; the value is what counts.
func (f *PortFlags) UnmarshalJSON(b []byte) error {
	var v Bits
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = PortFlags(v.Value)
	return nil
}

// lacpStateNames name the LACP state bits (IEEE 802.1AX, NetBSD's
// LACP_STATE_BITS), bit 0 first.
var lacpStateNames = []string{"ACTIVITY", "TIMEOUT", "AGGREGATION", "SYNC", "COLLECTING", "DISTRIBUTING", "DEFAULTED", "EXPIRED"}

// LACPStateBits returns an LACP state octet as a bit set.
func LACPStateBits(s lacp.State) Bits { return MakeBits(uint32(s), lacpStateNames) }

// countersJSON is Counters with its JSON keys.
type countersJSON struct {
	RxFrames uint64            `json:"rx_frames"`
	RxBytes  uint64            `json:"rx_bytes"`
	TxFrames uint64            `json:"tx_frames"`
	TxBytes  uint64            `json:"tx_bytes"`
	Drops    map[string]uint64 `json:"drops"`
	TxWaits  uint64            `json:"tx_waits"`
}

// MarshalJSON implements json.Marshaler: snake_case keys, drops {} when
// there are none.
func (c Counters) MarshalJSON() ([]byte, error) {
	j := countersJSON(c)
	if j.Drops == nil {
		j.Drops = map[string]uint64{}
	}
	return json.Marshal(j)
}

// UnmarshalJSON implements json.Unmarshaler.
func (c *Counters) UnmarshalJSON(b []byte) error {
	var j countersJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if len(j.Drops) == 0 {
		j.Drops = nil
	}
	*c = Counters(j)
	return nil
}

// StatusJSON is a lagg's status as JSON (Status.JSON).
type StatusJSON struct {
	Name           string           `json:"name"`
	Proto          string           `json:"proto"`
	MAC            string           `json:"mac"`
	MTU            uint32           `json:"mtu"`
	Up             bool             `json:"up"`
	Hash           string           `json:"hash"`
	TxPort         string           `json:"tx_port,omitempty"`
	Failovers      uint64           `json:"failovers"`
	LastFailoverMs float64          `json:"last_failover_ms"`
	RxAll          *bool            `json:"rx_all,omitempty"`
	Counters       Counters         `json:"counters"`
	LACP           *LACPStatusJSON  `json:"lacp,omitempty"`
	Ports          []PortStatusJSON `json:"ports"`
	Monitor        *MonitorJSON     `json:"monitor,omitempty"` // monitor_json.go
}

// PortStatusJSON is a port's status as JSON (PortStatus.JSON).
type PortStatusJSON struct {
	Name     string    `json:"name"`
	Priority uint16    `json:"priority"`
	Flags    PortFlags `json:"flags"`
	// Link is "up" or "down" ("missing" for a configured port whose
	// interface does not exist, in the appliance's status).
	Link        string        `json:"link"`
	Active      bool          `json:"active"`
	MTU         uint32        `json:"mtu"`
	MAC         string        `json:"mac"`
	SpeedMbps   uint64        `json:"speed_mbps"`
	Counters    Counters      `json:"counters"`
	KernelDrops uint64        `json:"kernel_drops"`
	LACP        *LACPPortJSON `json:"lacp,omitempty"` // verbose
	// Disabled by the operator; link losses since the port joined; when
	// its link last changed (or it joined).
	Disabled     bool       `json:"disabled"`
	LinkFailures uint64     `json:"link_failures"`
	LastChange   *time.Time `json:"last_change,omitempty"`
	// Monitor is the link monitor's verdict (monitor_json.go).
	Monitor *PortMonitorJSON `json:"monitor,omitempty"`
}

// LACPSystemJSON is an LACP system: priority, MAC and key.
type LACPSystemJSON struct {
	SystemPriority uint16 `json:"system_priority"`
	System         string `json:"system"`
	Key            uint16 `json:"key"`
}

// LACPStatusJSON is a lacp lagg's protocol state as JSON.
type LACPStatusJSON struct {
	Actor            LACPSystemJSON `json:"actor"`
	Partner          LACPSystemJSON `json:"partner"`
	ActiveAggregator int            `json:"active_aggregator"`
	Distributing     int            `json:"distributing"`
	Up               bool           `json:"up"`
	Fallback         bool           `json:"fallback"`
	PartnerSystems   int            `json:"partner_systems"`
	PartnerMismatch  bool           `json:"partner_mismatch"`
	LoopedPorts      int            `json:"looped_ports"`
	// Verbose.
	Select            string               `json:"select,omitempty"`
	FallbackPort      string               `json:"fallback_port,omitempty"`
	PartnerMismatches *uint64              `json:"partner_mismatches,omitempty"`
	RxUnknownPort     *uint64              `json:"rx_unknown_port,omitempty"`
	Generation        *uint64              `json:"generation,omitempty"`
	Aggregators       []LACPAggregatorJSON `json:"aggregators,omitempty"`
}

// LACPAggregatorJSON is one aggregator: a partner system and key, and the
// ports (names) selected or standing by for it.
type LACPAggregatorJSON struct {
	ID      int            `json:"id"`
	Partner LACPSystemJSON `json:"partner"`
	Ports   []string       `json:"ports"`
	Active  bool           `json:"active"`
}

// LACPInfoJSON is one side's information as an LACPDU carries it.
type LACPInfoJSON struct {
	SystemPriority uint16 `json:"system_priority"`
	System         string `json:"system"`
	Key            uint16 `json:"key"`
	PortPriority   uint16 `json:"port_priority"`
	Port           uint16 `json:"port"`
	State          Bits   `json:"state"`
}

// LACPPortJSON is a port's LACP state as JSON (verbose).
type LACPPortJSON struct {
	PortID       uint16        `json:"port_id"`
	Selected     string        `json:"selected"`
	Aggregator   int           `json:"aggregator"`
	Mux          string        `json:"mux"`
	Rx           string        `json:"rx"`
	Collecting   bool          `json:"collecting"`
	Distributing bool          `json:"distributing"`
	Standby      bool          `json:"standby"`
	Fallback     bool          `json:"fallback"`
	Looped       bool          `json:"looped"`
	ActorChurn   string        `json:"actor_churn"`
	PartnerChurn string        `json:"partner_churn"`
	Actor        LACPInfoJSON  `json:"actor"`
	Partner      LACPInfoJSON  `json:"partner"`
	Counters     lacp.Counters `json:"counters"`
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

func lacpSystem(k lacp.SystemKey) LACPSystemJSON {
	return LACPSystemJSON{SystemPriority: k.SystemPriority, System: macString(k.System), Key: k.Key}
}

func lacpInfo(i lacp.Info) LACPInfoJSON {
	return LACPInfoJSON{
		SystemPriority: i.SystemPriority, System: macString(i.System), Key: i.Key,
		PortPriority: i.PortPriority, Port: i.Port, State: LACPStateBits(i.State),
	}
}

// JSON returns st as JSON; verbose adds what `ifconfig -v` adds (the
// ports' LACP state, the aggregators).
func (st Status) JSON(verbose bool) StatusJSON {
	j := StatusJSON{
		Name: st.Name, Proto: string(st.Proto), MAC: st.MAC.String(), MTU: st.MTU, Up: st.Up,
		Hash: st.Hash.String(), TxPort: st.TxPort, Failovers: st.Failovers,
		LastFailoverMs: durationMs(st.LastFailover),
		Counters:       st.Counters, Ports: make([]PortStatusJSON, 0, len(st.Ports)),
	}
	if st.Failover != nil {
		rx := st.Failover.RxAll
		j.RxAll = &rx
	}
	j.Monitor = st.Monitor.JSON() // monitor_json.go
	names := map[lacp.PortID]string{}
	for _, p := range st.Ports {
		j.Ports = append(j.Ports, p.JSON(verbose))
		if p.LACP != nil {
			names[p.LACP.ID] = p.Name
		}
	}
	if l := st.LACP; l != nil {
		lj := &LACPStatusJSON{
			Actor: lacpSystem(l.Actor), Partner: lacpSystem(l.Partner), ActiveAggregator: l.Active,
			Distributing: l.Distributing, Up: l.Up, Fallback: l.Fallback, PartnerSystems: l.PartnerSystems,
			PartnerMismatch: l.PartnerMismatch, LoopedPorts: l.LoopedPorts,
		}
		if verbose {
			mm, unk, gen := l.PartnerMismatches, l.RxUnknownPort, l.Generation
			lj.Select, lj.PartnerMismatches, lj.RxUnknownPort, lj.Generation = l.Select, &mm, &unk, &gen
			if l.Fallback {
				lj.FallbackPort = names[l.FallbackPort]
			}
			lj.Aggregators = make([]LACPAggregatorJSON, 0, len(l.Aggregators))
			for _, a := range l.Aggregators {
				aj := LACPAggregatorJSON{ID: a.ID, Partner: lacpSystem(a.Partner), Active: a.Active, Ports: make([]string, 0, len(a.Ports))}
				for _, id := range a.Ports {
					aj.Ports = append(aj.Ports, names[id])
				}
				lj.Aggregators = append(lj.Aggregators, aj)
			}
		}
		j.LACP = lj
	}
	return j
}

// JSON returns p as JSON; verbose adds its LACP state.
func (p PortStatus) JSON(verbose bool) PortStatusJSON {
	j := PortStatusJSON{
		Name: p.Name, Priority: p.Priority, Flags: p.Flags, Link: "down", Active: p.Active,
		MTU: p.MTU, MAC: p.MAC.String(), SpeedMbps: p.SpeedMbps, Counters: p.Counters, KernelDrops: p.KernelDrops,
	}
	if p.LinkUp {
		j.Link = "up"
	}
	j.Disabled, j.LinkFailures = p.Disabled, p.LinkFailures
	j.Monitor = p.Monitor.JSON() // monitor_json.go
	if !p.LastChange.IsZero() {
		t := p.LastChange
		j.LastChange = &t
	}
	if l := p.LACP; l != nil && verbose {
		j.LACP = &LACPPortJSON{
			PortID: uint16(l.ID), Selected: l.Selected, Aggregator: l.Aggregator, Mux: l.Mux, Rx: l.Rx,
			Collecting: l.Collecting, Distributing: l.Distributing, Standby: l.Standby, Fallback: l.Fallback,
			Looped: l.Looped, ActorChurn: l.ActorChurn, PartnerChurn: l.PartnerChurn,
			Actor: lacpInfo(l.Actor), Partner: lacpInfo(l.Partner), Counters: l.Counters,
		}
	}
	return j
}

// MarshalJSON implements json.Marshaler: the verbose JSON form.
func (st Status) MarshalJSON() ([]byte, error) { return json.Marshal(st.JSON(true)) }

// MarshalJSON implements json.Marshaler: the verbose JSON form.
func (p PortStatus) MarshalJSON() ([]byte, error) { return json.Marshal(p.JSON(true)) }

// durationMs is d in milliseconds, to the microsecond.
func durationMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// MarshalText implements encoding.TextMarshaler: the kind's name, also for
// kinds this version does not name ("event(12)").
func (k EventKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler for the names
// MarshalText prints.
func (k *EventKind) UnmarshalText(b []byte) error {
	for kind, n := range eventNames {
		if n == string(b) {
			*k = kind
			return nil
		}
	}
	var n int
	if _, err := fmt.Sscanf(string(b), "event(%d)", &n); err == nil {
		*k = EventKind(n)
		return nil
	}
	return fmt.Errorf("unknown event kind %q", b)
}

// EventJSON is an event as JSON: Event's fields under the keys `ulagg
// monitor --json` prints (stack/appliance/schema/events.schema.json).
type EventJSON struct {
	Time       time.Time `json:"time"`
	Lagg       string    `json:"lagg"`
	Kind       string    `json:"kind"`
	Port       string    `json:"port,omitempty"`
	Up         *bool     `json:"up,omitempty"`
	From       string    `json:"from,omitempty"`
	To         string    `json:"to,omitempty"`
	DurationMs *float64  `json:"duration_ms,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// JSON returns ev as JSON. Up is given for the kinds it means something
// for, which include kinds this function does not know (new kinds flow
// through with their name, port, up and detail); failovers name the old
// and new port as from and to.
func (ev Event) JSON() EventJSON {
	j := EventJSON{Time: ev.Time, Lagg: ev.Lagg, Kind: ev.Kind.String(), Port: ev.Port, Detail: ev.Detail}
	switch ev.Kind {
	case EventFailover, EventFailoverDone:
		j.From, j.To = ev.From, ev.Port
		if ev.Kind == EventFailoverDone {
			ms := durationMs(ev.Duration)
			j.DurationMs = &ms
		}
	case EventLACP, EventPortRemoved, EventPortGone, EventConfig:
	default:
		up := ev.Up
		j.Up = &up
	}
	return j
}

// MarshalJSON implements json.Marshaler (EventJSON).
func (ev Event) MarshalJSON() ([]byte, error) { return json.Marshal(ev.JSON()) }
