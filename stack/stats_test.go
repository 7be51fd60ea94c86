package stack_test

import (
	"net/netip"
	"testing"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	ustack "github.com/ulagg/ulagg/stack"
)

func dropOf(s *gstack.Stack, name string) uint64 {
	for _, d := range ustack.Drops(s) {
		if d.Name == name {
			return d.Value
		}
	}
	return 1 << 63
}

// TestDrops: a malformed IPv4 header and a UDP datagram with a bad
// checksum show in the stack's drop counters.
func TestDrops(t *testing.T) {
	s, err := ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close(); s.Wait() }()
	ep := channel.New(4, 1500, "\x02\x00\x00\x00\x00\x01")
	if err := ustack.AddInterface(s, 1, "ch0", ep, []netip.Prefix{netip.MustParsePrefix("10.5.0.1/24")}); err != nil {
		t.Fatal(err)
	}
	inject := func(b []byte) {
		pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(b)})
		ep.InjectInbound(header.IPv4ProtocolNumber, pkt)
		pkt.DecRef()
	}
	bad := make([]byte, header.IPv4MinimumSize)
	bad[0] = 0x45
	header.IPv4(bad).SetTotalLength(10) // shorter than its header
	inject(bad)
	if got := dropOf(s, "ip_malformed"); got != 1 {
		t.Errorf("ip_malformed: got %d, want 1", got)
	}

	udp := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+4)
	ip := header.IPv4(udp)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(udp)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFrom4([4]byte{10, 5, 0, 2}), DstAddr: tcpip.AddrFrom4([4]byte{10, 5, 0, 1})})
	ip.SetChecksum(^ip.CalculateChecksum())
	u := header.UDP(ip.Payload())
	u.Encode(&header.UDPFields{SrcPort: 1000, DstPort: 7, Length: uint16(len(u))})
	u.SetChecksum(0x1234) // wrong
	inject(udp)
	if got := dropOf(s, "udp_checksum_errors"); got != 1 {
		t.Errorf("udp_checksum_errors: got %d, want 1", got)
	}
}
