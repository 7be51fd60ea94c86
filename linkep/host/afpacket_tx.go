package host

import (
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
	afTxBatch = 16 // frames per sendmmsg
	afTxIovs  = 16 // iovecs per frame; more views are merged (copied)
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
			iov = appendFrameIovecs(iov, pkt, afTxIovs)
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
