package appliance

import (
	"github.com/ulagg/ulagg/lagg"
)

// LaggJSON is a lagg's status as scripts read it (`ulagg ifconfig --json`,
// the http-status service).
type LaggJSON struct {
	Name           string           `json:"name"`
	Proto          string           `json:"proto"`
	MAC            string           `json:"mac"`
	MTU            uint32           `json:"mtu"`
	Up             bool             `json:"up"`
	Addresses      []string         `json:"addresses"`
	Hash           string           `json:"hash"`
	TxPort         string           `json:"tx_port,omitempty"`
	Failovers      uint64           `json:"failovers"`
	LastFailoverMs float64          `json:"last_failover_ms"`
	RxAll          *bool            `json:"rx_all,omitempty"`
	Counters       lagg.Counters    `json:"counters"`
	LACP           *lagg.LACPStatus `json:"lacp,omitempty"`
	Ports          []PortJSON       `json:"ports"`
	// With -v: the IP stack's drop counters that are not zero, and the
	// frames captures dropped. Both are the whole appliance's, not this
	// lagg's: the stack is shared.
	StackDrops   map[string]uint64 `json:"stack_drops,omitempty"`
	CaptureDrops uint64            `json:"capture_drops,omitempty"`
}

// PortJSON is one port's status.
type PortJSON struct {
	Name      string        `json:"name"`
	Priority  uint16        `json:"priority"`
	Flags     string        `json:"flags"`
	Link      string        `json:"link"`
	MTU       uint32        `json:"mtu"`
	MAC       string        `json:"mac"`
	SpeedMbps uint64        `json:"speed_mbps"`
	Counters  lagg.Counters `json:"counters"`
	// KernelDrops counts frames the kernel dropped before the port read
	// them (PACKET_STATISTICS), for ports that know.
	KernelDrops uint64               `json:"kernel_drops"`
	LACP        *lagg.LACPPortStatus `json:"lacp,omitempty"`
	// Missing: the port is configured but its interface does not exist;
	// it is attached when it appears. Reason says what opening it said.
	Missing bool   `json:"missing,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// StatusJSON converts statuses to their JSON form.
func StatusJSON(sts []LaggStatus) []LaggJSON {
	out := make([]LaggJSON, 0, len(sts))
	for _, st := range sts {
		j := LaggJSON{
			Name: st.Name, Proto: string(st.Proto), MAC: st.MAC.String(), MTU: st.MTU, Up: st.Up,
			Hash: st.Hash.String(), TxPort: st.TxPort, Failovers: st.Failovers,
			LastFailoverMs: float64(st.LastFailover.Microseconds()) / 1000,
			Counters:       st.Counters, LACP: st.LACP, Addresses: []string{}, Ports: []PortJSON{},
		}
		if st.Failover != nil {
			rx := st.Failover.RxAll
			j.RxAll = &rx
		}
		for _, a := range st.Addresses {
			j.Addresses = append(j.Addresses, a.String())
		}
		for _, p := range st.Ports {
			link := "down"
			if p.LinkUp {
				link = "up"
			}
			j.Ports = append(j.Ports, PortJSON{
				Name: p.Name, Priority: p.Priority, Flags: p.Flags.String(), Link: link,
				MTU: p.MTU, MAC: p.MAC.String(), SpeedMbps: p.SpeedMbps, Counters: p.Counters, KernelDrops: p.KernelDrops, LACP: p.LACP,
			})
		}
		for _, m := range st.Missing {
			j.Ports = append(j.Ports, PortJSON{
				Name: m.Name, Priority: m.Priority, Flags: "0x0", Link: "missing", Missing: true, Reason: m.Reason,
			})
		}
		out = append(out, j)
	}
	return out
}
