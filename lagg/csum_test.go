package lagg_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	ustack "github.com/ulagg/ulagg/stack"
)

// udpDatagram describes a UDP datagram to build frames of.
type udpDatagram struct {
	srcMAC, dstMAC tcpip.LinkAddress
	src, dst       netip.Addr
	sport, dport   uint16
	payload        []byte
	badCsum        bool // flip the checksum
	noCsum         bool // IPv4: checksum 0 (none)
	id             uint32
}

// segment returns the UDP header and payload with the checksum set.
func (u udpDatagram) segment() []byte {
	seg := make([]byte, header.UDPMinimumSize+len(u.payload))
	h := header.UDP(seg)
	h.Encode(&header.UDPFields{SrcPort: u.sport, DstPort: u.dport, Length: uint16(len(seg))})
	copy(seg[header.UDPMinimumSize:], u.payload)
	if u.noCsum {
		return seg
	}
	src, dst := tcpip.AddrFromSlice(u.src.AsSlice()), tcpip.AddrFromSlice(u.dst.AsSlice())
	xsum := ^checksum.Checksum(seg, header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(len(seg))))
	if xsum == 0 {
		xsum = 0xffff
	}
	if u.badCsum {
		xsum ^= 0x0101
	}
	h.SetChecksum(xsum)
	return seg
}

func (u udpDatagram) netProto() tcpip.NetworkProtocolNumber {
	if u.src.Is6() {
		return header.IPv6ProtocolNumber
	}
	return header.IPv4ProtocolNumber
}

// frames returns the datagram as Ethernet frames, fragmented into pieces
// of at most frag bytes of IP payload (a multiple of 8), or whole with
// frag 0.
func (u udpDatagram) frames(frag int) [][]byte {
	seg := u.segment()
	if frag == 0 || frag >= len(seg) {
		return [][]byte{u.frame(seg, 0, false, false)}
	}
	var out [][]byte
	for off := 0; off < len(seg); off += frag {
		end := min(off+frag, len(seg))
		out = append(out, u.frame(seg[off:end], off, end < len(seg), true))
	}
	return out
}

// frame wraps piece, at offset off of the IP payload, in IP and Ethernet.
func (u udpDatagram) frame(piece []byte, off int, more, fragment bool) []byte {
	eth := make([]byte, header.EthernetMinimumSize)
	header.Ethernet(eth).Encode(&header.EthernetFields{SrcAddr: u.srcMAC, DstAddr: u.dstMAC, Type: u.netProto()})
	src, dst := tcpip.AddrFromSlice(u.src.AsSlice()), tcpip.AddrFromSlice(u.dst.AsSlice())
	if u.src.Is4() {
		ip := header.IPv4(make([]byte, header.IPv4MinimumSize))
		var flags uint8
		if more {
			flags = header.IPv4FlagMoreFragments
		}
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(header.IPv4MinimumSize + len(piece)), ID: uint16(u.id), TTL: 64,
			Protocol: uint8(header.UDPProtocolNumber), SrcAddr: src, DstAddr: dst, Flags: flags, FragmentOffset: uint16(off)})
		ip.SetChecksum(^ip.CalculateChecksum())
		return append(append(eth, ip...), piece...)
	}
	ext := 0
	nh := header.UDPProtocolNumber
	if fragment {
		ext, nh = header.IPv6FragmentHeaderSize, header.IPv6FragmentHeader
	}
	ip := header.IPv6(make([]byte, header.IPv6MinimumSize+ext))
	ip.Encode(&header.IPv6Fields{PayloadLength: uint16(ext + len(piece)), TransportProtocol: nh, HopLimit: 64, SrcAddr: src, DstAddr: dst})
	if fragment {
		fh := ip[header.IPv6MinimumSize:]
		fh[0] = uint8(header.UDPProtocolNumber)
		v := uint16(off)
		if more {
			v |= 1
		}
		binary.BigEndian.PutUint16(fh[2:], v)
		binary.BigEndian.PutUint32(fh[4:], u.id)
	}
	return append(append(eth, ip...), piece...)
}

var (
	csumSrc4, csumDst4 = netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("10.0.0.1")
	csumSrc6, csumDst6 = netip.MustParseAddr("fd00::9"), netip.MustParseAddr("fd00::1")
)

func udp4(payload int) udpDatagram {
	return udpDatagram{srcMAC: macX, dstMAC: macY, src: csumSrc4, dst: csumDst4, sport: 4000, dport: 7, payload: make([]byte, payload), id: 77}
}

func udp6(payload int) udpDatagram {
	u := udp4(payload)
	u.src, u.dst = csumSrc6, csumDst6
	return u
}

// TestChecksumVerifiedInSoftware: the lagg claims RX checksum offload (so
// gVisor skips its checks) and verifies what the port did not vouch for:
// a TCP or UDP frame with a wrong checksum and RXChecksumValidated false is
// dropped and counted as "checksum"; with the right checksum it is
// delivered; a frame the port vouched for is not verified again (its
// checksum may be partial); a wrong IPv4 header checksum is dropped even
// when the port vouched for the transport checksum. None of it allocates.
func TestChecksumVerifiedInSoftware(t *testing.T) {
	l, sinks := newSinkLagg(t, "loadbalance", 2)
	if l.Capabilities()&stack.CapabilityRXChecksumOffload == 0 {
		t.Fatalf("the lagg does not claim RX checksum offload (caps %#x)", l.Capabilities())
	}
	var d countingDispatcher
	l.Attach(&d)
	name := sinks[0].Name()
	shim := lagg.PortDispatcher(l, name)
	payload := make([]byte, 100)
	for i := range payload {
		payload[i] = byte(i)
	}
	withPayload := func(u udpDatagram) udpDatagram { u.payload = payload; return u }
	bad := func(u udpDatagram) udpDatagram { u.badCsum = true; return u }
	tcpBad := func(v6 bool) []byte {
		f := tcp4(40000, 443)
		if v6 {
			f.src, f.dst = netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2")
		}
		b := f.frame()
		b[len(b)-1] ^= 0xff // payload corrupted after the checksum was set
		return b
	}
	ipHdrBad := udp4(10).frames(0)[0]
	ipHdrBad[header.EthernetMinimumSize+8]-- // TTL changed, header checksum not updated
	tests := []struct {
		name      string
		frame     []byte
		validated bool
		deliver   bool
	}{
		{"udp4 right checksum", withPayload(udp4(0)).frames(0)[0], false, true},
		{"udp4 wrong checksum", bad(withPayload(udp4(0))).frames(0)[0], false, false},
		{"udp4 wrong checksum vouched for", bad(withPayload(udp4(0))).frames(0)[0], true, true},
		{"udp4 no checksum", func() []byte { u := udp4(10); u.noCsum = true; return u.frames(0)[0] }(), false, true},
		{"udp6 right checksum", withPayload(udp6(0)).frames(0)[0], false, true},
		{"udp6 wrong checksum", bad(withPayload(udp6(0))).frames(0)[0], false, false},
		{"udp6 wrong checksum vouched for", bad(withPayload(udp6(0))).frames(0)[0], true, true},
		{"udp6 checksum 0", func() []byte {
			b := udp6(10).frames(0)[0]
			binary.BigEndian.PutUint16(b[header.EthernetMinimumSize+header.IPv6MinimumSize+6:], 0)
			return b
		}(), false, false},
		{"tcp4 right checksum", tcp4(40000, 443).frame(), false, true},
		{"tcp4 wrong checksum", tcpBad(false), false, false},
		{"tcp6 wrong checksum", tcpBad(true), false, false},
		{"tcp4 wrong checksum vouched for", tcpBad(false), true, true},
		{"ipv4 header checksum wrong", ipHdrBad, false, false},
		{"ipv4 header checksum wrong, vouched for", ipHdrBad, true, false},
		{"icmp (gVisor verifies it)", pingFrame(macY, macX, [4]byte{10, 0, 0, 9}, [4]byte{10, 0, 0, 1}, 1, 1), false, true},
		{"udp4 with Ethernet padding", func() []byte {
			b := udp4(2).frames(0)[0]
			return append(b, 0xde, 0xad, 0xbe, 0xef, 0x55, 0xaa, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c)
		}(), false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, drops := d.network.Load(), portStatus(t, l, name).Counters.Drops["checksum"]
			pkt := rxPacket(t, tc.frame, tc.validated)
			shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
			delivered := d.network.Load() - before
			dropped := portStatus(t, l, name).Counters.Drops["checksum"] - drops
			if want := map[bool]uint64{true: 1, false: 0}[tc.deliver]; delivered != want || dropped != 1-want {
				t.Errorf("delivered %d, counted as checksum drops %d; want %d and %d", delivered, dropped, want, 1-want)
			}
			if allocs := testing.AllocsPerRun(100, func() { shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt) }); allocs != 0 {
				t.Errorf("%v allocations per frame, want 0", allocs)
			}
		})
	}
}

// deliverAll hands frames to shim as a port would and returns how many
// reached the stack.
func deliverAll(t *testing.T, shim stack.NetworkDispatcher, d *countingDispatcher, frames [][]byte) uint64 {
	t.Helper()
	before := d.network.Load()
	for _, f := range frames {
		pkt := rxPacket(t, f, false)
		shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	}
	return d.network.Load() - before
}

// TestChecksumFragments: a fragmented UDP datagram cannot be verified per
// frame; the lagg sums its fragments as they pass and drops the one that
// completes a datagram whose checksum is wrong (and later duplicates), so
// gVisor never reassembles it. A right datagram passes whole, in any
// fragment order; fragments that gVisor would discard the datagram over
// (overlaps) end the tracking without a verdict.
func TestChecksumFragments(t *testing.T) {
	l, sinks := newSinkLagg(t, "loadbalance", 2)
	var d countingDispatcher
	l.Attach(&d)
	name := sinks[0].Name()
	shim := lagg.PortDispatcher(l, name)
	drops := func() uint64 { return portStatus(t, l, name).Counters.Drops["checksum"] }
	rev := func(f [][]byte) [][]byte {
		out := make([][]byte, len(f))
		for i := range f {
			out[len(f)-1-i] = f[i]
		}
		return out
	}
	shuffle := func(f [][]byte) [][]byte { // 2, 0, 3, 1, ... : gaps first
		var out [][]byte
		for i := 2; i < len(f); i += 2 {
			out = append(out, f[i])
		}
		out = append(out, f[0])
		for i := 1; i < len(f); i += 2 {
			out = append(out, f[i])
		}
		return out
	}
	id := uint32(100)
	for _, v6 := range []bool{false, true} {
		for _, order := range []struct {
			name string
			fn   func([][]byte) [][]byte
		}{{"in order", func(f [][]byte) [][]byte { return f }}, {"reversed", rev}, {"scattered", shuffle}} {
			t.Run(fmt.Sprintf("v6=%v/%s", v6, order.name), func(t *testing.T) {
				mk := func(bad bool) [][]byte {
					u := udp4(3000)
					if v6 {
						u = udp6(3000)
					}
					for i := range u.payload {
						u.payload[i] = byte(i * 7)
					}
					id++
					u.id, u.badCsum = id, bad
					return order.fn(u.frames(1232))
				}
				good := mk(false)
				if len(good) != 3 {
					t.Fatalf("%d fragments, want 3", len(good))
				}
				if got := deliverAll(t, shim, &d, good); got != 3 {
					t.Errorf("right datagram: %d of 3 fragments delivered", got)
				}
				before := drops()
				badFrags := mk(true)
				if got := deliverAll(t, shim, &d, badFrags); got != 2 {
					t.Errorf("wrong datagram: %d of 3 fragments delivered, want 2 (the completing one dropped)", got)
				}
				if got := drops() - before; got != 1 {
					t.Errorf("checksum drops: got %d, want 1", got)
				}
				// A duplicate of any fragment would let gVisor complete it.
				if got := deliverAll(t, shim, &d, badFrags[len(badFrags)-1:]); got != 0 {
					t.Errorf("the dropped fragment again: delivered")
				}
				if got := deliverAll(t, shim, &d, badFrags[:1]); got != 0 {
					t.Errorf("a duplicate of a fragment of the wrong datagram: delivered")
				}
			})
		}
	}
	t.Run("overlap ends tracking", func(t *testing.T) {
		u := udp4(3000)
		id++
		u.id, u.badCsum = id, true
		f := u.frames(1232)
		// gVisor discards the datagram on the partial overlap; a fresh
		// run of fragments starts a fresh datagram, here a wrong one.
		over := u.frames(1224)[1] // [1224, 2447]: overlaps [0, 1231]
		if got := deliverAll(t, shim, &d, [][]byte{f[0], over}); got != 2 {
			t.Errorf("fragment and overlap: %d of 2 delivered", got)
		}
		before := drops()
		if got := deliverAll(t, shim, &d, f); got != 2 {
			t.Errorf("wrong datagram after the overlap: %d of 3 delivered, want 2", got)
		}
		if drops()-before != 1 {
			t.Errorf("checksum drops: got %d, want 1", drops()-before)
		}
	})
	pkt := rxPacket(t, udp4(3000).frames(1232)[1], false)
	if allocs := testing.AllocsPerRun(100, func() { shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt) }); allocs != 0 {
		t.Errorf("a fragment: %v allocations, want 0", allocs)
	}
}

// TestChecksumThroughStack: through a gVisor stack whose NIC is the lagg,
// a UDP datagram with a wrong checksum never reaches the socket, whole or
// fragmented, over IPv4 and IPv6; with the right checksum it does.
func TestChecksumThroughStack(t *testing.T) {
	id := nextID()
	w := newWire(id, 0)
	n := newNode(t, options(fmt.Sprintf("csum%d", id), "failover"), "10.0.0.1/24", keep([]linkep.Port{w.A}))
	t.Cleanup(func() { w.A.Close(); w.B.Close() })
	if err := ustack.AddAddress(n.s, nicID, netip.MustParsePrefix("fd00::1/64")); err != nil {
		t.Fatal(err)
	}
	var rx countingDispatcher // what the lagg sends (neighbour discovery) is ignored
	w.B.Attach(&rx)
	mac := n.l.LinkAddress()
	for _, v6 := range []bool{false, true} {
		src, dst, proto := csumSrc4, csumDst4, ipv4.ProtocolNumber
		if v6 {
			src, dst, proto = csumSrc6, csumDst6, ipv6.ProtocolNumber
		}
		conn, err := gonet.DialUDP(n.s, &tcpip.FullAddress{NIC: nicID, Addr: tcpip.AddrFromSlice(dst.AsSlice()), Port: 7}, nil, proto)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		for _, frag := range []int{0, 1232} {
			for i, bad := range []bool{true, false} {
				u := udpDatagram{srcMAC: w.B.LinkAddress(), dstMAC: mac, src: src, dst: dst, sport: 4000, dport: 7,
					payload: fmt.Appendf(make([]byte, 0, 3000), "%v %d %v %s", v6, frag, bad, make([]byte, 2500)), badCsum: bad,
					id: uint32(1000 + 10*frag + i)}
				if frag == 0 {
					u.payload = u.payload[:200]
				}
				writeFrames(t, w.B, u.frames(frag))
				buf := make([]byte, 4096)
				_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
				k, err := conn.Read(buf)
				got := err == nil && string(buf[:k]) == string(u.payload)
				if got == bad {
					t.Errorf("v6=%v fragments of %d: bad checksum %v: received %v (err %v), want %v", v6, frag, bad, got, err, !bad)
				}
			}
		}
	}
}

func writeFrames(t *testing.T, e stack.LinkWriter, frames [][]byte) {
	t.Helper()
	for _, f := range frames {
		pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(f)})
		var l stack.PacketBufferList
		l.PushBack(pkt)
		if _, err := e.WritePackets(l); err != nil {
			t.Fatalf("write: %v", err)
		}
		pkt.DecRef()
	}
}

// BenchmarkRxChecksum is the receive accept of a UDP frame of each size,
// vouched for by the port (no verification: what BenchmarkRxAccept
// measures) and verified in software; the difference is the verification's
// cost per frame.
func BenchmarkRxChecksum(b *testing.B) {
	l, sinks := newSinkLagg(b, "loadbalance", 4)
	var d countingDispatcher
	l.Attach(&d)
	shim := lagg.PortDispatcher(l, sinks[2].Name())
	for _, v6 := range []bool{false, true} {
		for _, size := range []int{64, 512, 1472, 8972, 65000} {
			u := udp4(size)
			if v6 {
				u = udp6(size)
			}
			frame := u.frames(0)[0]
			for _, vouched := range []bool{true, false} {
				what := "verified"
				if vouched {
					what = "vouched"
				}
				b.Run(fmt.Sprintf("v6=%v/%dB/%s", v6, size, what), func(b *testing.B) {
					// Views as a port's: the frame split over pooled
					// chunks like afpacket's receive slots.
					pkt := rxPacket(b, frame, vouched)
					b.SetBytes(int64(len(frame)))
					b.ReportAllocs()
					for b.Loop() {
						shim.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
					}
				})
			}
		}
	}
}
