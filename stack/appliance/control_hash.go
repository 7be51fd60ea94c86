package appliance

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"

	"github.com/ulagg/ulagg/lagg"
)

// Operator queries and actions that are not configuration: which port a
// flow leaves on (ovs-appctl bond/hash), and ifconfig -z.
const (
	// CmdHash: Lagg, Args: PROTO SRC:PORT DST:PORT [vlan N] [dst-mac MAC]
	// (ParseFlowArgs). The answer comes from the lagg's transmitter.
	CmdHash = "hash"
)

// flowProtos are the transport protocols a flow query takes.
var flowProtos = map[string]uint8{"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}

// FlowArgs is a parsed flow query.
type FlowArgs struct {
	Proto    string
	Src, Dst netip.AddrPort
	VLAN     uint16
	DstMAC   net.HardwareAddr // nil: the neighbour entry of Dst (or Src)
}

// ParseFlowArgs reads PROTO SRC:PORT DST:PORT [vlan N] [dst-mac MAC].
// IPv6 endpoints are written [ADDR]:PORT.
func ParseFlowArgs(args []string) (FlowArgs, error) {
	var f FlowArgs
	if len(args) < 3 {
		return f, errors.New("want PROTO SRC:PORT DST:PORT [vlan N] [dst-mac MAC]")
	}
	f.Proto = strings.ToLower(args[0])
	if _, ok := flowProtos[f.Proto]; !ok {
		return f, fmt.Errorf("unknown protocol %q: want tcp, udp, sctp or udplite", args[0])
	}
	var err error
	if f.Src, err = netip.ParseAddrPort(args[1]); err != nil {
		return f, fmt.Errorf("source %q: want ADDR:PORT ([ADDR]:PORT for IPv6): %v", args[1], err)
	}
	if f.Dst, err = netip.ParseAddrPort(args[2]); err != nil {
		return f, fmt.Errorf("destination %q: want ADDR:PORT ([ADDR]:PORT for IPv6): %v", args[2], err)
	}
	if f.Src.Addr().Unmap().Is4() != f.Dst.Addr().Unmap().Is4() {
		return f, fmt.Errorf("%s and %s are not of the same IP version", f.Src.Addr(), f.Dst.Addr())
	}
	for rest := args[3:]; len(rest) > 0; rest = rest[2:] {
		if len(rest) < 2 {
			return f, fmt.Errorf("%s needs a value", rest[0])
		}
		switch rest[0] {
		case "vlan", "--vlan":
			n, err := strconv.ParseUint(rest[1], 10, 16)
			if err != nil || n < 1 || n > 4094 {
				return f, fmt.Errorf("vlan %q: want 1..4094", rest[1])
			}
			f.VLAN = uint16(n)
		case "dst-mac", "--dst-mac":
			m, err := net.ParseMAC(rest[1])
			if err != nil || len(m) != 6 {
				return f, fmt.Errorf("dst-mac %q: want an Ethernet MAC address", rest[1])
			}
			f.DstMAC = m
		default:
			return f, fmt.Errorf("unknown option %q: want vlan N or dst-mac MAC", rest[0])
		}
	}
	return f, nil
}

// Args returns f as ParseFlowArgs reads it.
func (f FlowArgs) Args() []string {
	a := []string{f.Proto, f.Src.String(), f.Dst.String()}
	if f.VLAN != 0 {
		a = append(a, "vlan", strconv.Itoa(int(f.VLAN)))
	}
	if f.DstMAC != nil {
		a = append(a, "dst-mac", f.DstMAC.String())
	}
	return a
}

// FlowPort answers which port of lagg name the flow f leaves on now, and
// the flow's hash. Unless f gives the destination MAC, it is that of the
// neighbour entry for the destination, else for the source (the hash is
// the same both ways); with none and a hash over l2, the query fails.
func (a *Appliance) FlowPort(name string, f FlowArgs) (port string, hash uint32, err error) {
	l, nic := a.Lagg(name), a.NIC(name)
	if l == nil {
		return "", 0, fmt.Errorf("%s: no such lagg", name)
	}
	st := l.Status()
	layers := st.Hash
	fl := lagg.Flow{Proto: flowProtos[f.Proto], Src: f.Src, Dst: f.Dst, SrcMAC: l.LinkAddress(), VLAN: f.VLAN}
	if f.DstMAC != nil {
		fl.DstMAC = tcpip.LinkAddress(f.DstMAC)
	} else if mac, ok := a.neighbourMAC(nic, f.Dst.Addr(), f.Src.Addr()); ok {
		fl.DstMAC = mac
	} else if hashesFlows(st.Proto) && (layers == 0 || layers&lagg.HashL2 != 0) {
		return "", 0, fmt.Errorf("%s hashes on l2 and has no neighbour entry for %s or %s: give dst-mac MAC (the next hop's)", name, f.Dst.Addr(), f.Src.Addr())
	}
	frame, err := fl.Frame()
	if err != nil {
		return "", 0, err
	}
	hash = lagg.HashFrame(frame, layers)
	port, err = l.PortFor(frame)
	return port, hash, err
}

// hashesFlows reports whether proto places flows by their hash: only then
// does the answer depend on the MACs.
func hashesFlows(proto lagg.Proto) bool {
	return proto == lagg.ProtoLoadBalance || proto == lagg.ProtoLACP
}

// neighbourMAC returns the link address of the first of addrs that the
// NIC's neighbour table resolves.
func (a *Appliance) neighbourMAC(nic tcpip.NICID, addrs ...netip.Addr) (tcpip.LinkAddress, bool) {
	for _, addr := range addrs {
		addr = addr.Unmap()
		proto := ipv4.ProtocolNumber
		if addr.Is6() {
			proto = ipv6.ProtocolNumber
		}
		entries, err := a.s.Neighbors(nic, proto)
		if err != nil {
			continue
		}
		want := tcpip.AddrFromSlice(addr.AsSlice())
		for _, e := range entries {
			if e.Addr == want && len(e.LinkAddr) == 6 {
				return e.LinkAddr, true
			}
		}
	}
	return "", false
}

// hash serves CmdHash.
func (s *ControlServer) hash(req ControlRequest) ControlResponse {
	if req.Lagg == "" {
		return fail(errors.New("hash: no lagg given"))
	}
	f, err := ParseFlowArgs(req.Args)
	if err != nil {
		return fail(fmt.Errorf("hash: %w", err))
	}
	port, h, err := s.a.FlowPort(req.Lagg, f)
	if err != nil {
		return fail(err)
	}
	return ControlResponse{OK: true, Output: fmt.Sprintf("%s %s -> %s: %s (hash 0x%08x)\n", f.Proto, f.Src, f.Dst, port, h)}
}

// ZeroCounters zeroes the counters of lagg name, or of every lagg if name
// is "" (ifconfig -z).
func (a *Appliance) ZeroCounters(name string) error {
	if name != "" {
		l := a.Lagg(name)
		if l == nil {
			return fmt.Errorf("%s: no such lagg", name)
		}
		l.ZeroCounters()
		return nil
	}
	for _, st := range a.Status() {
		if l := a.Lagg(st.Name); l != nil {
			l.ZeroCounters()
		}
	}
	return nil
}
