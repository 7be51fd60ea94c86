package host

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ulagg/ulagg/linkep"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The AF_PACKET receive path: one goroutine per attached port reads batches
// with recvmmsg into views from gVisor's buffer pool, as fdbased's recvmmsg
// dispatcher does, and delivers each frame inline. Unlike fdbased it
//   - reads PACKET_AUXDATA and puts a VLAN tag the kernel stripped back into
//     the frame, and sets RXChecksumValidated from the kernel's word
//     (auxdata status, virtio-net header flags) instead of for every frame;
//   - keeps reading through socket errors (ENETDOWN while the interface is
//     admin down), backing off when they repeat;
//   - stops through an eventfd the port owns, and can be started again;
//   - collects PACKET_STATISTICS drops.
//
// The headers, iovecs and control buffers are allocated once per port and
// reused; per frame the only allocations are the pooled views a frame
// consumed (replaced before the next read) and the packet buffer.

const (
	// afRxBatch is the number of frames per recvmmsg. Each slot holds up to
	// 64 KiB of views, allocated once and replaced as frames consume them.
	afRxBatch = 8
	// afRxShrinkAfter: a port whose socket stayed empty this long goes
	// back to reading one frame at a time, releasing the other slots'
	// views (7 × 64 KiB).
	afRxShrinkAfter = time.Second
	// afRxHeadroom is left free at the start of every slot's first view,
	// so a stripped VLAN tag can be put back by moving the MACs down.
	afRxHeadroom = 4
	// afRxCtlWords sizes a slot's control buffer in uint64s (8-byte
	// aligned for cmsghdr): one PACKET_AUXDATA message needs 40 bytes.
	afRxCtlWords = 8
	// afStatsEvery is how often the receive goroutine collects the
	// kernel's drop counter while frames keep coming.
	afStatsEvery = 100 * time.Millisecond
	// The pause before reading again after consecutive socket errors
	// doubles from afRxBackoffMin up to afRxBackoffMax.
	afRxBackoffMin = 10 * time.Millisecond
	afRxBackoffMax = time.Second

	vnetFlagDataValid = 2 // VIRTIO_NET_HDR_F_DATA_VALID
)

// afRxBufSizes are the views behind each slot: a frame takes only the views
// it fills, and together they hold a 64 KiB GSO frame plus a VLAN tag after
// the headroom. Three sizes, for the three kinds of frame: an MTU-sized
// frame (or an ACK) takes one view, a 9000-byte jumbo frame two, a GSO
// frame three. fdbased's ten (128 B to 32 KiB) cost a 64 KiB frame ten
// pooled views and chunks to renew, zero and release; ulagg's receive
// profile showed that pool traffic as the largest cost it owned.
var afRxBufSizes = [...]int{2048, 8192, 65536}

// afRxSlot is the storage for one frame of a batch.
type afRxSlot struct {
	views [len(afRxBufSizes)]*buffer.View
	iovs  [1 + len(afRxBufSizes)]unix.Iovec // [0] is the virtio-net header
	vnet  [vnetHdrSize]byte
	ctl   [afRxCtlWords]uint64
}

// afRx is a port's receive state. Apart from stop, only the receive
// goroutine uses it, and Close once that goroutine stopped.
type afRx struct {
	fd, efd int
	vnet    bool // frames start with a virtio-net header
	hdrs    [afRxBatch]rawfile.MMsgHdr
	slots   [afRxBatch]afRxSlot
	pfds    [2]unix.PollFd
	used    int // slots the last recvmmsg filled: their views and headers need renewing
	// batch is how many slots recvmmsg fills: 1 while the port is quiet,
	// afRxBatch once frames queue up (two full reads without a poll).
	batch int
	full  bool // the last read filled the batch

	// stop asks the receive goroutine to return; it also checks it between
	// batches, since it polls the eventfd only when the socket runs dry.
	stop atomic.Bool
}

func newAFRx(fd, efd int, vnet bool) *afRx {
	r := &afRx{fd: fd, efd: efd, vnet: vnet, used: 1, batch: 1}
	for k := range r.slots {
		s := &r.slots[k]
		iovs := s.iovs[1:]
		if vnet {
			s.iovs[0] = unix.Iovec{Base: &s.vnet[0]}
			s.iovs[0].SetLen(vnetHdrSize)
			iovs = s.iovs[:]
		}
		m := &r.hdrs[k].Msg
		m.Iov = &iovs[0]
		m.SetIovlen(len(iovs))
		m.Control = (*byte)(unsafe.Pointer(&s.ctl[0]))
	}
	r.pfds[0] = unix.PollFd{Fd: int32(efd), Events: unix.POLLIN}
	r.pfds[1] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	return r
}

// renew replaces the views the last batch consumed and resets the headers
// the kernel wrote.
func (r *afRx) renew() {
	for k := range r.used {
		r.slots[k].refill()
		h := &r.hdrs[k]
		h.Len = 0
		h.Msg.Flags = 0
		h.Msg.SetControllen(afRxCtlWords * 8)
	}
	r.used = 0
}

// release returns every view to the pool.
func (r *afRx) release() {
	for k := range r.slots {
		r.slots[k].release()
	}
	r.used, r.batch, r.full = 1, 1, false
}

// refill gives the slot a view wherever the last frame took one.
func (s *afRxSlot) refill() {
	for i, v := range s.views {
		if v != nil {
			continue
		}
		v = buffer.NewViewSize(afRxBufSizes[i])
		s.views[i] = v
		b := v.AsSlice()
		if i == 0 {
			b = b[afRxHeadroom:]
		}
		s.iovs[1+i] = unix.Iovec{Base: &b[0]}
		s.iovs[1+i].SetLen(len(b))
	}
}

// release returns the slot's views to the pool.
func (s *afRxSlot) release() {
	for i, v := range s.views {
		if v != nil {
			v.Release()
			s.views[i] = nil
		}
	}
	clear(s.iovs[1:])
}

// grow makes recvmmsg fill every slot; renew gives the new ones views.
func (r *afRx) grow() {
	r.batch, r.used = afRxBatch, afRxBatch
}

// shrink releases the views of every slot but the first.
func (r *afRx) shrink() {
	for k := 1; k < r.batch; k++ {
		r.slots[k].release()
	}
	r.batch, r.full = 1, false
}

// recv reads up to a batch without blocking.
func (r *afRx) recv() (int, unix.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(r.fd), uintptr(unsafe.Pointer(&r.hdrs[0])),
		uintptr(r.batch), unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	r.used = int(n)
	return int(n), 0
}

// wait blocks until the socket is readable (or reports an error) or the
// eventfd says stop. With sleep > 0 it only waits that long for the stop.
func (r *afRx) wait(sleep time.Duration) (stop bool, sockErr bool, errno unix.Errno) {
	return r.waitFor(sleep, 0)
}

// waitFor is wait; with timeout > 0 (and sleep 0) it waits for the socket
// at most that long.
func (r *afRx) waitFor(sleep, timeout time.Duration) (stop bool, sockErr bool, errno unix.Errno) {
	r.pfds[0].Revents, r.pfds[1].Revents = 0, 0
	nfds, ts := uintptr(2), (*unix.Timespec)(nil)
	if sleep > 0 {
		nfds = 1
		t := unix.NsecToTimespec(sleep.Nanoseconds())
		ts = &t
	} else if timeout > 0 {
		t := unix.NsecToTimespec(timeout.Nanoseconds())
		ts = &t
	}
	_, _, errno = unix.Syscall6(unix.SYS_PPOLL, uintptr(unsafe.Pointer(&r.pfds[0])), nfds, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if r.pfds[0].Revents != 0 {
		return true, false, 0
	}
	return false, r.pfds[1].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0, errno
}

// afRxErrors counts consecutive receive failures for the back-off. Failures
// further apart than afRxErrorsForget are not consecutive.
type afRxErrors struct {
	n    int
	last time.Time
}

const afRxErrorsForget = 2 * afRxBackoffMax

// fail counts a failure and reports whether it starts a new streak.
func (e *afRxErrors) fail() bool {
	now := time.Now()
	if now.Sub(e.last) > afRxErrorsForget {
		e.n = 0
	}
	e.n++
	e.last = now
	return e.n == 1
}

// pause is how long to wait before reading again: nothing after a single
// failure, then 10 ms doubling up to 1 s.
func (e *afRxErrors) pause() time.Duration {
	if e.n < 2 {
		return 0
	}
	return min(afRxBackoffMin<<min(e.n-2, 10), afRxBackoffMax)
}

// receive is the receive goroutine: it delivers frames to d until told to
// stop (r.stop and the eventfd), then closes done.
func (p *AFPacket) receive(d stack.NetworkDispatcher, done chan struct{}) {
	defer close(done)
	r := p.rx
	var errs afRxErrors
	pollErr := false // the last poll woke for an error condition
	lastStats := time.Now()
	for !r.stop.Load() {
		if pause := errs.pause(); pause > 0 {
			if stop, _, _ := r.wait(pause); stop {
				return
			}
		}
		r.renew()
		n, errno := r.recv()
		switch errno {
		case 0:
			if n > 0 {
				errs.n, pollErr = 0, false
				full := n == r.batch
				if full && r.full && r.batch < afRxBatch {
					r.grow()
				}
				r.full = full
				p.deliverBatch(d, n)
				if now := time.Now(); now.Sub(lastStats) >= afStatsEvery {
					lastStats = now
					p.readStats()
				}
				continue
			}
		case unix.EINTR:
			continue
		case unix.EAGAIN:
		default:
			// ENETDOWN while the interface is admin down; reading
			// cleared it. Anything else that persists backs off.
			pollErr = false
			if errs.fail() {
				lvl := p.log.Warn
				if errno == unix.ENETDOWN {
					lvl = p.log.Debug
				}
				lvl("receive error, still receiving", "err", errno)
			}
			continue
		}
		// Nothing queued.
		if pollErr {
			// The poll said error but there was none to read: take a
			// pending SO_ERROR and count it so a stuck condition backs
			// off instead of spinning.
			_, _ = unix.GetsockoptInt(r.fd, unix.SOL_SOCKET, unix.SO_ERROR)
			errs.fail()
		}
		if time.Since(lastStats) >= afStatsEvery {
			lastStats = time.Now()
			p.readStats()
		}
		r.full = false
		var timeout time.Duration
		if r.batch > 1 {
			timeout = afRxShrinkAfter
		}
		waitFrom := time.Now()
		stop, sockErr, errno := r.waitFor(0, timeout)
		if stop {
			return
		}
		if r.batch > 1 && time.Since(waitFrom) >= afRxShrinkAfter {
			r.shrink()
		}
		pollErr = sockErr
		if errno != 0 && errno != unix.EINTR && errs.fail() {
			p.log.Warn("receive poll failed", "err", errno)
		}
	}
}

// deliverBatch hands the n frames just read to d.
func (p *AFPacket) deliverBatch(d stack.NetworkDispatcher, n int) {
	addr := p.LinkAddress()
	r := p.rx
	for k := range n {
		pkt := p.frame(r, k, addr)
		if pkt == nil {
			continue
		}
		d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
		pkt.DecRef()
	}
}

// frame turns slot k into a packet, or returns nil if the frame is dropped;
// a dropped frame leaves its views in the slot for the next read.
func (p *AFPacket) frame(r *afRx, k int, addr tcpip.LinkAddress) *stack.PacketBuffer {
	s, h := &r.slots[k], &r.hdrs[k]
	n := int(h.Len)
	var vnetFlags byte
	if r.vnet {
		n -= vnetHdrSize
		vnetFlags = s.vnet[0]
	}
	if n < ethHdrSize || h.Msg.Flags&unix.MSG_TRUNC != 0 {
		p.RxErrors.Add(1)
		return nil
	}
	eth := s.views[0].AsSlice()[afRxHeadroom:]
	// The interface's own MAC too: a lagg's link monitor probes with it.
	// Such a frame is marked PacketOtherHost (linkep.Port's contract).
	ownMAC := false
	if dst := eth[:header.EthernetAddressSize]; dst[0]&1 == 0 && string(dst) != string(addr) {
		if string(dst) != string(p.hw) {
			p.Foreign.Add(1)
			return nil
		}
		ownMAC = true
	}
	aux, _ := parseAuxdata(s.ctl[:], int(h.Msg.Controllen))
	var tpid uint16
	if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 || aux.Vlan_tci != 0 {
		tpid = unix.ETH_P_8021Q
		if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
			tpid = aux.Vlan_tpid
		}
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: s.take(n, tpid, aux.Vlan_tci)})
	pkt.RXChecksumValidated = aux.Status&(unix.TP_STATUS_CSUMNOTREADY|unix.TP_STATUS_CSUM_VALID) != 0 ||
		vnetFlags&(vnetFlagNeedsCsum|vnetFlagDataValid) != 0
	linkep.ParseEthernetHeader(pkt) // n >= ethHdrSize
	if ownMAC {
		pkt.PktType = tcpip.PacketOtherHost
	}
	return pkt
}

// take moves the n-byte frame out of the slot's views into a buffer,
// putting back a VLAN tag (tpid, tci) first when tpid is not 0.
func (s *afRxSlot) take(n int, tpid, tci uint16) buffer.Buffer {
	v := s.views[0]
	s.views[0] = nil
	first := min(n, v.Size()-afRxHeadroom)
	v.CapLength(afRxHeadroom + first)
	if tpid != 0 {
		// The view is ours alone: write in place. The MACs move down
		// into the headroom and the tag goes between them and the
		// EtherType.
		b := v.AsSlice()
		copy(b, b[afRxHeadroom:afRxHeadroom+2*header.EthernetAddressSize])
		binary.BigEndian.PutUint16(b[12:], tpid)
		binary.BigEndian.PutUint16(b[14:], tci)
	} else {
		v.TrimFront(afRxHeadroom)
	}
	buf := buffer.MakeWithView(v)
	n -= first
	for i := 1; n > 0; i++ {
		v := s.views[i]
		s.views[i] = nil
		c := min(n, v.Size())
		v.CapLength(c)
		// The views before are full, so this links v without copying.
		_ = buf.Append(v)
		n -= c
	}
	return buf
}

// parseAuxdata finds the PACKET_AUXDATA message in the first n bytes of ctl.
func parseAuxdata(ctl []uint64, n int) (unix.TpacketAuxdata, bool) {
	b := unsafe.Slice((*byte)(unsafe.Pointer(&ctl[0])), min(n, len(ctl)*8))
	hdrLen := unix.CmsgLen(0)
	for len(b) >= hdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < hdrLen || l > len(b) {
			break
		}
		if h.Level == unix.SOL_PACKET && h.Type == unix.PACKET_AUXDATA && l >= unix.CmsgLen(int(unsafe.Sizeof(unix.TpacketAuxdata{}))) {
			return *(*unix.TpacketAuxdata)(unsafe.Pointer(&b[hdrLen])), true
		}
		next := unix.CmsgSpace(l - hdrLen)
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return unix.TpacketAuxdata{}, false
}
