package host

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The virtio-net header both AF_PACKET (PACKET_VNET_HDR) and TAP
// (IFF_VNET_HDR) put in front of every frame when host GSO is on, and the
// iovecs of a frame to write; shared by afpacket_tx.go and tap.go.

const vnetHdrSize = 10 // struct virtio_net_hdr

// virtio_net.h
const (
	vnetFlagNeedsCsum = 1
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
)

// fillVnetHdr writes pkt's virtio-net header as fdbased does for host GSO.
// It returns false for a GSO type the header cannot express.
func fillVnetHdr(h *[vnetHdrSize]byte, pkt *stack.PacketBuffer) bool {
	*h = [vnetHdrSize]byte{}
	gso := &pkt.GSOOptions
	if gso.Type == stack.GSONone {
		return true
	}
	binary.LittleEndian.PutUint16(h[2:], uint16(pkt.HeaderSize())) // hdr_len
	if gso.NeedsCsum {
		h[0] = vnetFlagNeedsCsum
		binary.LittleEndian.PutUint16(h[6:], ethHdrSize+gso.L3HdrLen) // csum_start
		binary.LittleEndian.PutUint16(h[8:], gso.CsumOffset)          // csum_offset
	}
	if pkt.Data().Size() > int(gso.MSS) {
		switch gso.Type {
		case stack.GSOTCPv4:
			h[1] = vnetGSOTCPv4
		case stack.GSOTCPv6:
			h[1] = vnetGSOTCPv6
		default:
			return false
		}
		binary.LittleEndian.PutUint16(h[4:], gso.MSS) // gso_size
	}
	return true
}

// appendFrameIovecs appends the iovecs of pkt's frame (headers and payload)
// to iov; past maxIovs iovecs the rest is merged into the last one (a copy).
func appendFrameIovecs(iov []unix.Iovec, pkt *stack.PacketBuffer, maxIovs int) []unix.Iovec {
	views, off := pkt.AsViewList()
	for v := views.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if off >= len(b) {
			off -= len(b)
			continue
		}
		iov = rawfile.AppendIovecFromBytes(iov, b[off:], maxIovs)
		off = 0
	}
	return iov
}
