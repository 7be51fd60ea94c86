package appliance

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

// Interface flags as NetBSD's ifconfig prints them (sys/net/if.h); a lagg
// has UP when it is administratively up and RUNNING when, in addition, its
// link is up.
const (
	IfUp        = 0x1
	IfBroadcast = 0x2
	IfRunning   = 0x40
	IfSimplex   = 0x800
	IfMulticast = 0x8000
)

// bitName names one bit for bitString.
type bitName struct {
	bit  uint32
	name string
}

var ifFlagNames = []bitName{
	{IfUp, "UP"}, {IfBroadcast, "BROADCAST"}, {IfRunning, "RUNNING"},
	{IfSimplex, "SIMPLEX"}, {IfMulticast, "MULTICAST"},
}

// lacpMultiLS is LAGGREQLACP_MULTILS, the one NetBSD lacp flag ulagg has.
const lacpMultiLS = 0x8

// IfFlags returns st's interface flags.
func IfFlags(st LaggStatus) uint32 {
	f := uint32(IfBroadcast | IfSimplex | IfMulticast)
	if st.AdminUp {
		f |= IfUp
		if st.Up {
			f |= IfRunning
		}
	}
	return f
}

// bitString formats v like NetBSD's snprintb: "0x8843<UP,BROADCAST>", or
// "0x0" when no bit is set.
func bitString(v uint32, names []bitName) string {
	var set []string
	for _, n := range names {
		if v&n.bit != 0 {
			set = append(set, n.name)
		}
	}
	if len(set) == 0 {
		return fmt.Sprintf("0x%x", v)
	}
	return fmt.Sprintf("0x%x<%s>", v, strings.Join(set, ","))
}

func portFlagString(f lagg.PortFlags) string {
	if f == 0 {
		return "0x0" // snprintb prints no empty <>
	}
	return f.String()
}

// FormatOptions choose what FormatStatus prints.
type FormatOptions struct {
	// Verbose is ifconfig -v: LACP actor and partner, protocol details and
	// counters.
	Verbose bool
}

// FormatStatus writes a lagg's status as NetBSD's `ifconfig lagg0` does:
// the flags line, lagg_status (laggproto, laggport lines), the address,
// media and link status, counters with -v, and the IP addresses. lc, the
// lagg's running configuration, supplies the lacp options; it may be nil.
func FormatStatus(w io.Writer, st LaggStatus, lc *config.Lagg, o FormatOptions) {
	b := &strings.Builder{}
	fmt.Fprintf(b, "%s: flags=%s mtu %d\n", st.Name, bitString(IfFlags(st), ifFlagNames), st.MTU)
	fmt.Fprintf(b, "\tlaggproto %s\n", st.Proto)
	formatProto(b, st, lc, o)
	formatMonitor(b, st) // format_monitor.go
	if len(st.Ports) > 0 || len(st.Missing) > 0 {
		b.WriteString("\tlaggport:\n")
		for _, p := range st.Ports {
			fmt.Fprintf(b, "\t\t%s pri=%d flags=%s%s\n", p.Name, p.Priority, portFlagString(p.Flags), disabledMark(p)+monitorMark(p))
			if o.Verbose {
				formatPortVerbose(b, p)
			}
		}
		// Configured ports whose interface is missing, attached when it
		// appears.
		for _, m := range st.Missing {
			fmt.Fprintf(b, "\t\t%s pri=%d flags=0x0 <MISSING>\n", m.Name, m.Priority)
			if o.Verbose && m.Reason != "" {
				fmt.Fprintf(b, "\t\t\tinterface missing (%s); attached when it appears\n", m.Reason)
			}
		}
	}
	fmt.Fprintf(b, "\taddress: %s\n", st.MAC)
	b.WriteString("\tmedia: Ethernet autoselect\n")
	if st.Up {
		b.WriteString("\tstatus: active\n")
	} else {
		b.WriteString("\tstatus: no carrier\n")
	}
	if o.Verbose {
		formatCounters(b, "\t", st.Counters)
	}
	for _, a := range st.Addresses {
		formatAddress(b, a)
	}
	formatLinkLocal(b, st) // linklocal.go
	for _, p := range st.Autoconf {
		fmt.Fprintf(b, "\tinet6 %s flags 0x40<AUTOCONF>\n", p) // NetBSD's IN6_IFF_AUTOCONF
	}
	st.DHCP.format(b) // dhcp.go
	_, _ = io.WriteString(w, b.String())
}

func formatProto(b *strings.Builder, st LaggStatus, lc *config.Lagg, o FormatOptions) {
	switch {
	case st.Failover != nil:
		if st.Failover.RxAll {
			b.WriteString("\t\tlaggfailover rx-all\n")
		} else {
			b.WriteString("\t\tlaggfailover -rx-all\n")
		}
		if o.Verbose {
			tx := st.TxPort
			if tx == "" {
				tx = "none"
			}
			fmt.Fprintf(b, "\t\ttx port=%s, failovers=%d, last failover=%s\n", tx, st.Failovers, fmtMillis(st.LastFailover.Seconds()*1000))
		}
	case st.Proto == config.ProtoLACP && o.Verbose:
		if lc != nil {
			var flags uint32
			if lc.LACP.MultiSpeed {
				flags |= lacpMultiLS
			}
			fmt.Fprintf(b, "\t\tmax ports=%d, flags=%s\n", lc.LACP.MaxPorts, bitString(flags, []bitName{{lacpMultiLS, "MULTILS"}}))
			fb := "off"
			if lc.LACP.Fallback {
				fb = "on"
			}
			sel := ""
			if lc.LACP.Select != "" && lc.LACP.Select != "stable" { // the default is not shown
				sel = ", select=" + lc.LACP.Select
			}
			fmt.Fprintf(b, "\t\tmin ports=%d, rate=%s, mode=%s, fallback=%s%s\n", lc.LACP.MinPorts, lc.LACP.Rate, lc.LACP.Mode, fb, sel)
		}
		if st.LACP != nil {
			fmt.Fprintf(b, "\t\tactor=%s\n", lacpID(st.LACP.Actor.SystemPriority, st.LACP.Actor.System, st.LACP.Actor.Key))
			fmt.Fprintf(b, "\t\tpartner=%s\n", lacpID(st.LACP.Partner.SystemPriority, st.LACP.Partner.System, st.LACP.Partner.Key))
			if st.LACP.PartnerMismatch {
				fmt.Fprintf(b, "\t\talarm: ports see %d partner systems (raised %d times): a miscabled or rogue link; only the active aggregator carries traffic (select %s)\n",
					st.LACP.PartnerSystems, st.LACP.PartnerMismatches, st.LACP.Select)
			}
			if st.LACP.LoopedPorts > 0 {
				fmt.Fprintf(b, "\t\talarm: %d looped ports: our own LACPDUs come back on them\n", st.LACP.LoopedPorts)
			}
		}
	}
	if o.Verbose && (st.Proto == config.ProtoLoadBalance || st.Proto == config.ProtoLACP) {
		fmt.Fprintf(b, "\t\thash=%s\n", st.Hash)
	}
}

// lacpID formats a system as NetBSD's lacp_format_id: [prio,mac,key] in hex.
func lacpID(prio uint16, mac [6]byte, key uint16) string {
	return fmt.Sprintf("[%04X,%02X-%02X-%02X-%02X-%02X-%02X,%04X]", prio, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], key)
}

func formatPortVerbose(b *strings.Builder, p lagg.PortStatus) {
	if l := p.LACP; l != nil {
		fmt.Fprintf(b, "\t\t\tactor: state=%s\n", l.Actor.State)
		fmt.Fprintf(b, "\t\t\tpartner=%s\n", lacpID(l.Partner.SystemPriority, l.Partner.System, l.Partner.Key))
		fmt.Fprintf(b, "\t\t\tpartner: port=%04X prio=%04X state=%s\n", l.Partner.Port, l.Partner.PortPriority, l.Partner.State)
		fmt.Fprintf(b, "\t\t\tmux=%s rx=%s %s, lacpdu in=%d out=%d\n", l.Mux, l.Rx, l.Selected, l.Counters.LACPDUsRx, l.Counters.LACPDUsTx)
		if l.Looped {
			fmt.Fprintf(b, "\t\t\tlooped: our own LACPDUs come back (%d); no traffic\n", l.Counters.LoopbackRx)
		}
	}
	link := "down"
	if p.LinkUp {
		link = "up"
	}
	speed := "unknown speed"
	if p.SpeedMbps > 0 {
		speed = fmt.Sprintf("speed %d Mbit/s", p.SpeedMbps)
	}
	fmt.Fprintf(b, "\t\t\tlink %s, %s, mtu %d, address %s\n", link, speed, p.MTU, p.MAC)
	formatPortAdmin(b, p)   // format_admin.go
	formatPortMonitor(b, p) // format_monitor.go
	formatCounters(b, "\t\t\t", p.Counters)
	if p.KernelDrops > 0 {
		fmt.Fprintf(b, "\t\t\tkernel drops: %d (socket buffer full)\n", p.KernelDrops)
	}
}

// formatDrops prints, for -v, what the shared IP stack and the captures
// dropped, once something did: the stack's reasons that are not zero.
func formatDrops(b *strings.Builder, a *Appliance) {
	stackDrops, captureDrops := a.Drops()
	var parts []string
	for _, d := range stackDrops {
		if d.Value != 0 {
			parts = append(parts, fmt.Sprintf("%s %d", d.Name, d.Value))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(b, "stack: drops: %s\n", strings.Join(parts, ", "))
	}
	if captureDrops > 0 {
		fmt.Fprintf(b, "capture: drops: %d\n", captureDrops)
	}
}

// formatCounters prints ifconfig -v's input and output lines, then drops
// by reason (a ulagg addition) when there are any.
func formatCounters(b *strings.Builder, indent string, c lagg.Counters) {
	fmt.Fprintf(b, "%sinput: %s, %d bytes\n", indent, plural(c.RxFrames, "packet"), c.RxBytes)
	fmt.Fprintf(b, "%soutput: %s, %d bytes\n", indent, plural(c.TxFrames, "packet"), c.TxBytes)
	if len(c.Drops) > 0 {
		reasons := slices.Sorted(maps.Keys(c.Drops))
		parts := make([]string, len(reasons))
		for i, r := range reasons {
			parts[i] = fmt.Sprintf("%s=%d", r, c.Drops[r])
		}
		fmt.Fprintf(b, "%sdrops: %s\n", indent, strings.Join(parts, ", "))
	}
	if c.TxWaits > 0 {
		fmt.Fprintf(b, "%soutput queue full: waited %s\n", indent, plural(c.TxWaits, "time"))
	}
}

func plural(n uint64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func fmtMillis(ms float64) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", ms), "0"), ".") + " ms"
}

// formatAddress prints an address as NetBSD does, e.g.
// "inet 192.168.1.1/24 broadcast 192.168.1.255 flags 0x0".
func formatAddress(b *strings.Builder, p netip.Prefix) {
	if !p.Addr().Is4() {
		fmt.Fprintf(b, "\tinet6 %s flags 0x0\n", p)
		return
	}
	if p.Bits() >= 31 {
		fmt.Fprintf(b, "\tinet %s flags 0x0\n", p)
		return
	}
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	bc := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	fmt.Fprintf(b, "\tinet %s broadcast %s flags 0x0\n", p, bc)
}
