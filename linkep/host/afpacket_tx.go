package host

import (
	"encoding/binary"
	"sync"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The AF_PACKET transmit path. fdbased's WritePackets allocates three times
// per call (batch, mmsghdrs, an iovec slice per packet); this one sends the
// same sendmmsg batches, virtio-net header included, from pooled scratch
// space and allocates nothing.

const (
	afTxBatch   = 16 // frames per sendmmsg
	afTxIovs    = 16 // iovecs per frame; more views are merged (copied)
	vnetHdrSize = 10 // struct virtio_net_hdr
)

// virtio_net.h
const (
	vnetFlagNeedsCsum = 1
	vnetGSOTCPv4      = 1
	vnetGSOTCPv6      = 4
)

type afTxScratch struct {
	hdrs [afTxBatch]rawfile.MMsgHdr
	iovs [afTxBatch][afTxIovs]unix.Iovec
	vnet [afTxBatch][vnetHdrSize]byte
}

var afTxPool = sync.Pool{New: func() any { return new(afTxScratch) }}

// writeFrames sends pkts on fd, each prefixed with a virtio-net header when
// vnet is set. It returns how many were sent.
func writeFrames(fd int, vnet bool, pkts []*stack.PacketBuffer) (int, tcpip.Error) {
	s := afTxPool.Get().(*afTxScratch)
	used := 0
	defer func() {
		// Don't let the pool pin packet memory.
		clear(s.hdrs[:used])
		clear(s.iovs[:used])
		afTxPool.Put(s)
	}()
	sent := 0
	for sent < len(pkts) {
		batch := pkts[sent:min(len(pkts), sent+afTxBatch)]
		used = max(used, len(batch))
		for i, pkt := range batch {
			iov := s.iovs[i][:0]
			if vnet {
				if !fillVnetHdr(&s.vnet[i], pkt) {
					return sent, &tcpip.ErrNotSupported{}
				}
				iov = append(iov, rawfile.IovecFromBytes(s.vnet[i][:]))
			}
			views, off := pkt.AsViewList()
			for v := views.Front(); v != nil; v = v.Next() {
				b := v.AsSlice()
				if off >= len(b) {
					off -= len(b)
					continue
				}
				iov = rawfile.AppendIovecFromBytes(iov, b[off:], afTxIovs)
				off = 0
			}
			s.hdrs[i] = rawfile.MMsgHdr{}
			s.hdrs[i].Msg.Iov = &s.iovs[i][0]
			s.hdrs[i].Msg.SetIovlen(len(iov))
		}
		hdrs := s.hdrs[:len(batch)]
		for len(hdrs) > 0 {
			n, errno := rawfile.NonBlockingSendMMsg(fd, hdrs)
			if errno != 0 {
				return sent, tcpip.TranslateErrno(errno)
			}
			sent += n
			hdrs = hdrs[n:]
		}
	}
	return sent, nil
}

// fillVnetHdr writes pkt's virtio-net header as fdbased does for host GSO.
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
