package appliance

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

// VLANStatus is a VLAN interface's status: its configuration and, while
// it runs (it has an ID and a parent), its link and counters.
type VLANStatus struct {
	Name      string
	ID        uint16 // 0: no vlan/vlanif given
	Parent    string
	Running   bool // it has a NIC
	AdminUp   bool // its NIC is enabled: its lagg is not administratively down
	Up        bool // admin up and its lagg's link is up
	MTU       uint32
	MAC       tcpip.LinkAddress
	Addresses []netip.Prefix
	Counters  lagg.Counters // frames and bytes through this VLAN
	DHCP      *DHCPStatus   // the DHCP client, nil if it runs none (dhcp.go)
	// NIC is the VLAN's NIC (its IPv6 scope ID) while it runs; LinkLocal
	// its link-local address, from its MAC (linklocal.go).
	NIC       tcpip.NICID
	LinkLocal netip.Prefix
}

// VLANStatus returns every VLAN interface's status, in configuration
// order. Like Status, it reads what the last change published.
func (a *Appliance) VLANStatus() []VLANStatus {
	cfg := a.pub.Load().cfg
	var run map[string]pubVLAN
	if m := a.pubVLANs.Load(); m != nil {
		run = *m
	}
	var out []VLANStatus
	for _, vc := range cfg.VLANs {
		st := VLANStatus{Name: vc.Name, ID: vc.ID, Parent: vc.Parent, Addresses: vc.Addresses}
		if pv, ok := run[vc.Name]; ok {
			l := pv.v.Lagg()
			st.Running = true
			st.AdminUp = a.s.CheckNIC(pv.nic)
			st.Up = st.AdminUp && l.IsAttached() && l.Status().Up
			st.MTU = pv.v.MTU()
			st.MAC = pv.v.LinkAddress()
			st.Counters = pv.v.Counters()
			st.DHCP = a.dhcpStatus(vc.Name)
			st.NIC, st.LinkLocal = pv.nic, a.linkLocal(pv.nic)
		}
		out = append(out, st)
	}
	return out
}

// FormatVLANStatus writes a VLAN's status as NetBSD's `ifconfig vlan100`
// does: flags, the vlan and parent line, the address, the IP addresses.
func FormatVLANStatus(w io.Writer, st VLANStatus, o FormatOptions) {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s: flags=%s mtu %d\n", st.Name, bitString(st.flags(), ifFlagNames), st.MTU)
	if st.Parent != "" {
		fmt.Fprintf(b, "\tvlan: %d parent interface: %s\n", st.ID, st.Parent)
	} else {
		b.WriteString("\tvlan: <none> parent interface: <none>\n")
	}
	if st.Running {
		fmt.Fprintf(b, "\taddress: %s\n", st.MAC)
		if st.Up {
			b.WriteString("\tstatus: active\n")
		} else {
			b.WriteString("\tstatus: no carrier\n")
		}
	}
	if o.Verbose {
		formatCounters(b, "\t", st.Counters)
	}
	for _, a := range st.Addresses {
		formatAddress(b, a)
	}
	if st.LinkLocal.IsValid() { // as a lagg's (formatLinkLocal)
		fmt.Fprintf(b, "\tinet6 %s prefixlen %d scopeid 0x%x\n", st.LinkLocal.Addr().WithZone(st.Name), st.LinkLocal.Bits(), st.NIC)
	}
	st.DHCP.format(b) // dhcp.go
	_, _ = io.WriteString(w, b.String())
}

// flags are the VLAN's interface flags, as ifconfig prints them.
func (st VLANStatus) flags() uint32 {
	flags := uint32(IfBroadcast | IfSimplex | IfMulticast)
	if st.AdminUp {
		flags |= IfUp
	}
	if st.Up {
		flags |= IfRunning
	}
	return flags
}

// VLANJSON is a VLAN interface's status as scripts read it: in
// `ulagg ifconfig -a --json` it follows the laggs in the same array, told
// apart by its vlan object (a lagg has proto instead). Keys a lagg also
// has mean the same (status.schema.json).
type VLANJSON struct {
	Name      string        `json:"name"`
	VLAN      VLANTagJSON   `json:"vlan"`
	Running   bool          `json:"running"` // it has a NIC: it has an ID and a parent
	Flags     lagg.Bits     `json:"flags"`
	AdminUp   bool          `json:"admin_up"`
	Up        bool          `json:"up"`
	MTU       uint32        `json:"mtu"`
	MAC       string        `json:"mac"` // its lagg's; "" while it is not running
	Addresses []string      `json:"addresses"`
	Counters  lagg.Counters `json:"counters"`
	LinkLocal string        `json:"link_local,omitempty"`
	ScopeID   uint32        `json:"scope_id,omitempty"`
	DHCP      *DHCPJSON     `json:"dhcp,omitempty"`
}

// VLANTagJSON is NetBSD's "vlan: 100 parent interface: lagg0".
type VLANTagJSON struct {
	ID     uint16 `json:"id"`     // 0 while none is set
	Parent string `json:"parent"` // "" while none is set
}

// JSON returns st as JSON.
func (st VLANStatus) JSON() VLANJSON {
	j := VLANJSON{Name: st.Name, VLAN: VLANTagJSON{ID: st.ID, Parent: st.Parent}, Running: st.Running,
		Flags: lagg.MakeBits(st.flags(), ifFlagBits), AdminUp: st.AdminUp, Up: st.Up, MTU: st.MTU,
		Addresses: make([]string, 0, len(st.Addresses)), Counters: st.Counters}
	if st.MAC != "" {
		j.MAC = st.MAC.String()
	}
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
	return j
}

// withVLANs is ifconfig --json's list: the laggs js, then, for -a (no
// interface named), every VLAN interface.
func (s *ControlServer) withVLANs(js []LaggJSON, req ControlRequest) []any {
	out := make([]any, 0, len(js))
	for _, j := range js {
		out = append(out, j)
	}
	if req.Lagg == "" {
		for _, st := range s.a.VLANStatus() {
			out = append(out, st.JSON())
		}
	}
	return out
}

// vlanStatus answers `ulagg ifconfig [-v] [--json] vlanN`; ok is false
// when req names no VLAN interface.
func (s *ControlServer) vlanStatus(req ControlRequest) (out string, ok bool, err error) {
	if !config.IsVLANName(req.Lagg) {
		return "", false, nil
	}
	for _, st := range s.a.VLANStatus() {
		if st.Name != req.Lagg {
			continue
		}
		if req.JSON {
			b, err := json.MarshalIndent([]VLANJSON{st.JSON()}, "", "  ")
			return string(b) + "\n", true, err
		}
		var b strings.Builder
		FormatVLANStatus(&b, st, FormatOptions{Verbose: req.Verbose})
		return b.String(), true, nil
	}
	return "", true, fmt.Errorf("%s: no such interface", req.Lagg)
}

// formatVLANs appends every VLAN interface (ifconfig -a, after the laggs).
func (s *ControlServer) formatVLANs(b *strings.Builder, req ControlRequest) {
	for _, st := range s.a.VLANStatus() {
		FormatVLANStatus(b, st, FormatOptions{Verbose: req.Verbose})
	}
}

// vlanNames lists the VLAN interfaces (ifconfig -l).
func (a *Appliance) vlanNames() []string {
	var out []string
	for _, v := range a.pub.Load().cfg.VLANs {
		out = append(out, v.Name)
	}
	return out
}

var (
	lv = []string{"vlan", "lagg", "vid"}

	dVLANRxFrames = desc("vlan_rx_frames_total", "Frames received on a VLAN interface.", lv...)
	dVLANRxBytes  = desc("vlan_rx_bytes_total", "Bytes received on a VLAN interface.", lv...)
	dVLANTxFrames = desc("vlan_tx_frames_total", "Frames sent on a VLAN interface.", lv...)
	dVLANTxBytes  = desc("vlan_tx_bytes_total", "Bytes sent on a VLAN interface.", lv...)

	vlanDescs = []*prometheus.Desc{dVLANRxFrames, dVLANRxBytes, dVLANTxFrames, dVLANTxBytes}
)

// collectVLANs sends each running VLAN's frame and byte counters.
func collectVLANs(m metricSink, a *Appliance) {
	for _, st := range a.VLANStatus() {
		if !st.Running {
			continue
		}
		labels := []string{st.Name, st.Parent, fmt.Sprint(st.ID)}
		m.counter(dVLANRxFrames, float64(st.Counters.RxFrames), labels...)
		m.counter(dVLANRxBytes, float64(st.Counters.RxBytes), labels...)
		m.counter(dVLANTxFrames, float64(st.Counters.TxFrames), labels...)
		m.counter(dVLANTxBytes, float64(st.Counters.TxBytes), labels...)
	}
}
