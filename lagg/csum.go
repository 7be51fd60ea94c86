package lagg

import (
	"encoding/binary"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Receive checksums.
//
// A port sets pkt.RXChecksumValidated only when the kernel vouches for the
// frame's transport checksum (linkep's contract). gVisor's NIC cannot be
// told per frame: it overwrites RXChecksumValidated with the outermost
// endpoint's CapabilityRXChecksumOffload, the lagg's. Not claiming it would
// make gVisor verify every frame, and reject the frames the kernel vouched
// for because their checksum is only partial (locally generated TCP and UDP
// over veth: TP_STATUS_CSUMNOTREADY; completing those in software would
// cost a pass over every 64 KB GSO frame, and a second one in gVisor).
//
// So the lagg always claims the capability and keeps the claim honest: the
// port's receive accept verifies in software, for every IPv4 and IPv6 frame,
// what gVisor then skips — the IPv4 header checksum of every frame (20-60
// bytes; the kernel never vouches for it either), and the TCP or UDP
// checksum of every frame the port did not vouch for — and drops a frame
// that fails as DropChecksum. ICMP, ICMPv6 and IGMP checksums are verified by
// gVisor whatever the capability says.
//
// A fragment cannot be verified on its own, and gVisor takes the reassembled
// datagram's RXChecksumValidated from its first fragment, which the NIC set
// to true. The lagg therefore follows fragmented TCP and UDP datagrams
// (fragTracker): it adds up each fragment's payload as it passes, mirrors
// how gVisor's reassembler accepts fragments, and when the fragment that
// completes a datagram arrives it checks the datagram's checksum; if that
// is wrong it drops this last fragment, so gVisor never completes the
// datagram (its partial reassembly times out), and keeps dropping the
// datagram's later fragments until then. Nothing is held back or copied.
//
// What is not verified: a datagram whose tracking entry was evicted by a
// fragment flood (fragSlots datagrams in flight at once) or whose fragments
// arrive too scattered (more than fragIntervals holes), an IPv6 datagram
// whose first fragment does not hold the whole header chain, and a UDP
// datagram whose UDP length is shorter than its reassembled payload. These
// fail open: checksums guard against corruption, not against a sender,
// who can always compute a correct one.

// verifyRx reports whether the IPv4 or IPv6 frame pkt (as a port delivers
// it: Ethernet header consumed) may go to the stack. It allocates nothing.
// A frame too malformed to parse is passed on: gVisor drops it while
// parsing, before any checksum would be consulted.
func (l *Lagg) verifyRx(proto tcpip.NetworkProtocolNumber, pkt *stack.PacketBuffer) bool {
	d := pktData(pkt)
	if proto == header.IPv4ProtocolNumber {
		return l.verifyIPv4(d, pkt.RXChecksumValidated)
	}
	return l.verifyIPv6(d, pkt.RXChecksumValidated)
}

// data is the data of a received packet (the bytes after the Ethernet
// header), read in place.
type data struct {
	pkt  *stack.PacketBuffer
	off  int // where the data starts in the packet's buffer
	size int
}

func pktData(pkt *stack.PacketBuffer) data {
	_, hoff := pkt.AsViewList()
	return data{pkt: pkt, off: hoff + pkt.HeaderSize(), size: pkt.Data().Size()}
}

// peek copies the data at [off, off+len(dst)) into dst and returns how many
// bytes there were.
func (d data) peek(off int, dst []byte) int {
	if off >= d.size {
		return 0
	}
	dst = dst[:min(len(dst), d.size-off)]
	vl, _ := d.pkt.AsViewList()
	skip, n := d.off+off, 0
	for v := vl.Front(); v != nil && n < len(dst); v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		n += copy(dst[n:], b[skip:])
		skip = 0
	}
	return n
}

// head returns the data at [0, n) in place when one view holds it (the
// usual case: a port's first view holds the headers), else nil.
func (d data) head(n int) []byte {
	if n > d.size {
		return nil
	}
	vl, _ := d.pkt.AsViewList()
	skip := d.off
	for v := vl.Front(); v != nil; v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		if len(b)-skip >= n {
			return b[skip : skip+n]
		}
		return nil
	}
	return nil
}

// sum is the Internet checksum (RFC 1071, not complemented) of the data at
// [off, off+length); the range must lie within the data.
func (d data) sum(off, length int) uint16 {
	var cs checksum.Checksumer
	vl, _ := d.pkt.AsViewList()
	skip := d.off + off
	for v := vl.Front(); v != nil && length > 0; v = v.Next() {
		b := v.AsSlice()
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		b = b[skip:]
		skip = 0
		if len(b) > length {
			b = b[:length]
		}
		cs.Add(b)
		length -= len(b)
	}
	return cs.Checksum()
}

// sum16 adds b as big-endian 16-bit words (b has an even length), folded.
func sum16(b []byte, acc uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}

// pseudoSum is the transport pseudo-header's sum: addresses (4 or 16 bytes
// each), protocol and transport length.
func pseudoSum(src, dst []byte, proto uint8, length int) uint16 {
	return sum16(dst, uint32(sum16(src, uint32(proto)+uint32(length))))
}

const (
	tcpProto = uint8(header.TCPProtocolNumber)
	udpProto = uint8(header.UDPProtocolNumber)
)

// verifyL4 checks the TCP or UDP segment at [off, off+length) of d against
// its pseudo-header. A segment too short for its header, or a UDP length
// that does not fit, is passed on: gVisor drops it as malformed.
func verifyL4(d data, off, length int, proto uint8, src, dst []byte, v6 bool) bool {
	switch proto {
	case tcpProto:
		if length < header.TCPMinimumSize {
			return true
		}
	case udpProto:
		var u [header.UDPMinimumSize]byte
		if length < len(u) || d.peek(off, u[:]) < len(u) {
			return true
		}
		ulen := int(binary.BigEndian.Uint16(u[4:]))
		if ulen < len(u) || ulen > length {
			return true
		}
		if !v6 && u[6] == 0 && u[7] == 0 {
			return true // IPv4 UDP without a checksum (RFC 768)
		}
		length = ulen // gVisor trims the payload to the UDP length
	default:
		return true
	}
	return checksum.Combine(pseudoSum(src, dst, proto, length), d.sum(off, length)) == 0xffff
}

func (l *Lagg) verifyIPv4(d data, vouched bool) bool {
	var buf [header.IPv4MaximumHeaderSize]byte
	h := d.head(min(d.size, len(buf)))
	if h == nil {
		h = buf[:d.peek(0, buf[:])]
	}
	n := len(h)
	if n < header.IPv4MinimumSize || h[0]>>4 != 4 {
		return true
	}
	ihl := int(h[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(h[2:]))
	if ihl < header.IPv4MinimumSize || n < ihl || tot < ihl || tot > d.size {
		return true
	}
	if sum16(h[:ihl], 0) != 0xffff {
		return false
	}
	proto := h[9]
	if proto != tcpProto && proto != udpProto {
		return true
	}
	src, dst := h[12:16], h[16:20]
	frag := binary.BigEndian.Uint16(h[6:])
	more, first := frag&0x2000 != 0, int(frag&0x1fff)*8
	if !more && first == 0 {
		return vouched || verifyL4(d, ihl, tot-ihl, proto, src, dst, false)
	}
	var k fragKey
	copy(k.src[:], src)
	copy(k.dst[:], dst)
	k.id, k.proto = uint32(binary.BigEndian.Uint16(h[4:])), proto
	size := tot - ihl
	if size == 0 || first+size > header.IPv4MaximumPayloadSize {
		return true // gVisor drops the fragment alone
	}
	f := fragIn{first: first, size: size, more: more, sum: d.sum(ihl, size)}
	if first == 0 {
		f.head = headOf(d, ihl, size, proto, false)
	}
	return l.frags.add(l.clock.Now(), k, &f)
}

// IPv6 extension headers that gVisor walks before the transport header.
const (
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6DestOpts = 60
)

func (l *Lagg) verifyIPv6(d data, vouched bool) bool {
	var buf [header.IPv6MinimumSize]byte
	h := d.head(len(buf))
	if h == nil {
		h = buf[:d.peek(0, buf[:])]
	}
	if len(h) < header.IPv6MinimumSize || h[0]>>4 != 6 {
		return true
	}
	end := header.IPv6MinimumSize + int(binary.BigEndian.Uint16(h[4:]))
	if end > d.size {
		return true
	}
	src, dst := h[8:24], h[24:40]
	nh, off := h[6], header.IPv6MinimumSize
	for {
		switch nh {
		case tcpProto, udpProto:
			return vouched || verifyL4(d, off, end-off, nh, src, dst, true)
		case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			var e [2]byte
			if off+len(e) > end || d.peek(off, e[:]) < len(e) {
				return true
			}
			nh, off = e[0], off+(int(e[1])+1)*8
			if off > end {
				return true
			}
		case ipv6Fragment:
			var fh [header.IPv6FragmentHeaderSize]byte
			if off+len(fh) > end || d.peek(off, fh[:]) < len(fh) {
				return true
			}
			fo := binary.BigEndian.Uint16(fh[2:])
			more, first := fo&1 != 0, int(fo&^7)
			off += len(fh)
			if !more && first == 0 {
				nh = fh[0] // an atomic fragment (RFC 6946): a whole packet
				continue
			}
			switch fh[0] {
			case tcpProto, udpProto, ipv6HopByHop, ipv6Routing, ipv6DestOpts:
			default:
				return true // not TCP or UDP: nothing gVisor would skip
			}
			var k fragKey
			copy(k.src[:], src)
			copy(k.dst[:], dst)
			k.id, k.v6 = binary.BigEndian.Uint32(fh[4:]), true
			size := end - off
			if size == 0 {
				return true
			}
			f := fragIn{first: first, size: size, more: more}
			if first == 0 {
				f.head = headOf(d, off, size, fh[0], true)
				f.sum = d.sum(off+f.head.l4off, size-f.head.l4off)
			} else {
				f.sum = d.sum(off, size)
			}
			return l.frags.add(l.clock.Now(), k, &f)
		default:
			return true
		}
	}
}

// fragHead is what a datagram's first fragment says about its transport
// segment.
type fragHead struct {
	ok     bool  // a TCP or UDP segment with a checksum to verify
	proto  uint8 // TCP or UDP
	l4off  int   // where the segment starts in the reassembled payload
	udpLen int   // UDP: the UDP length
}

// headOf reads the transport header of a first fragment whose payload is
// at [off, off+size) of d; nh is the protocol after the IP (or fragment)
// header.
func headOf(d data, off, size int, nh uint8, v6 bool) fragHead {
	var hd fragHead
	l4 := 0
	for v6 && (nh == ipv6HopByHop || nh == ipv6Routing || nh == ipv6DestOpts) {
		var e [2]byte
		if l4+len(e) > size || d.peek(off+l4, e[:]) < len(e) {
			return hd
		}
		nh, l4 = e[0], l4+(int(e[1])+1)*8
	}
	switch nh {
	case tcpProto:
		if l4+header.TCPMinimumSize > size {
			return hd // the header chain does not fit the first fragment
		}
	case udpProto:
		var u [header.UDPMinimumSize]byte
		if l4+len(u) > size || d.peek(off+l4, u[:]) < len(u) {
			return hd
		}
		if !v6 && u[6] == 0 && u[7] == 0 {
			return hd // no checksum
		}
		hd.udpLen = int(binary.BigEndian.Uint16(u[4:]))
	default:
		return hd
	}
	hd.ok, hd.proto, hd.l4off = true, nh, l4
	return hd
}

// Fragment tracking.
const (
	// fragSlots bounds the datagrams followed at once; past it the oldest
	// is forgotten (and goes unverified).
	fragSlots = 64
	// fragIntervals bounds the disjoint runs of fragments a datagram may
	// have before it is complete.
	fragIntervals = 8
	// gVisor's reassembly timeouts (ipv4.ReassembleTimeout,
	// ipv6.ReassembleTimeout): a datagram is followed as long as gVisor
	// may still complete it.
	fragTimeoutV4 = 30 * time.Second
	fragTimeoutV6 = 60 * time.Second
)

// fragKey identifies a datagram as gVisor's reassembler does: IPv4 by
// addresses, identification and protocol, IPv6 by addresses and
// identification.
type fragKey struct {
	src, dst [16]byte
	id       uint32
	proto    uint8
	v6       bool
}

// fragIn is one received fragment.
type fragIn struct {
	first, size int
	more        bool
	sum         uint16   // of its payload (from the transport header on, for the first)
	head        fragHead // first == 0 only
}

type fragRun struct{ first, last int } // bytes of the payload, inclusive

type fragEntry struct {
	used    bool
	key     fragKey
	expires time.Time
	runs    [fragIntervals]fragRun // sorted, disjoint, not adjacent
	n       int
	total   int // payload length once the last fragment came, else -1
	sum     uint16
	head    fragHead
	skip    bool // nothing to verify, or cannot be verified: pass every fragment
	bad     bool // verified wrong: drop every fragment until it expires
}

// fragTracker follows fragmented TCP and UDP datagrams (see the comment at
// the top of this file). Every fragment takes its mutex; unfragmented
// frames never do.
type fragTracker struct {
	mu sync.Mutex
	// +checklocks:mu
	e [fragSlots]fragEntry
}

// add accounts for fragment f of datagram k and reports whether it may go
// on to the stack.
func (t *fragTracker) add(now time.Time, k fragKey, f *fragIn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.findLocked(now, k)
	switch {
	case e.bad:
		return false
	case e.skip:
		return true
	case f.more && f.size%8 != 0:
		return true // gVisor refuses this fragment alone
	}
	first, last := f.first, f.first+f.size-1
	// Mirror gVisor's reassembler: a fragment inside what arrived is a
	// duplicate (ignored; or an overlap, after which gVisor discards the
	// datagram and nothing we decide matters); one that overlaps partly, a
	// second end, or data past the end make it discard the datagram, and
	// so do we.
	for _, r := range e.runs[:e.n] {
		if last < r.first || r.last < first {
			continue
		}
		if first >= r.first && last <= r.last {
			return true
		}
		*e = fragEntry{}
		return true
	}
	if !f.more && (e.total >= 0 && e.total != last+1 || e.n > 0 && e.runs[e.n-1].last > last) ||
		f.more && e.total >= 0 && last >= e.total {
		*e = fragEntry{}
		return true
	}
	if !e.insertLocked(first, last) {
		e.skip = true // too scattered to follow
		return true
	}
	e.sum = checksum.Combine(e.sum, f.sum)
	if !f.more {
		e.total = last + 1
	}
	if first == 0 {
		e.head = f.head
		if !f.head.ok {
			e.skip = true
			return true
		}
	}
	if e.total < 0 || e.n != 1 || e.runs[0].first != 0 || e.runs[0].last != e.total-1 {
		return true
	}
	// Complete: this fragment completes the datagram in gVisor too.
	h := e.head
	length := e.total - h.l4off
	n := 4
	if k.v6 {
		n = 16
	}
	// A UDP length short of the payload (trailing bytes, which gVisor
	// trims) is not followed.
	if h.proto == udpProto && h.udpLen != length ||
		checksum.Combine(pseudoSum(k.src[:n], k.dst[:n], h.proto, length), e.sum) == 0xffff {
		*e = fragEntry{}
		return true
	}
	e.bad = true
	return false
}

// insertLocked adds the run [first, last], disjoint from e's, merging it
// with its neighbours; it reports false if e has no room.
func (e *fragEntry) insertLocked(first, last int) bool {
	i := 0
	for i < e.n && e.runs[i].last < first {
		i++
	}
	joinPrev := i > 0 && e.runs[i-1].last+1 == first
	joinNext := i < e.n && e.runs[i].first == last+1
	switch {
	case joinPrev && joinNext:
		e.runs[i-1].last = e.runs[i].last
		copy(e.runs[i:], e.runs[i+1:e.n])
		e.n--
	case joinPrev:
		e.runs[i-1].last = last
	case joinNext:
		e.runs[i].first = first
	default:
		if e.n == len(e.runs) {
			return false
		}
		copy(e.runs[i+1:], e.runs[i:e.n])
		e.runs[i] = fragRun{first, last}
		e.n++
	}
	return true
}

// findLocked returns k's entry, making one (forgetting the oldest datagram
// if every slot is taken) if there is none.
//
// +checklocks:t.mu
func (t *fragTracker) findLocked(now time.Time, k fragKey) *fragEntry {
	var free, oldest *fragEntry
	for i := range t.e {
		e := &t.e[i]
		if e.used && now.After(e.expires) {
			*e = fragEntry{}
		}
		if !e.used {
			if free == nil {
				free = e
			}
			continue
		}
		if e.key == k {
			return e
		}
		if oldest == nil || e.expires.Before(oldest.expires) {
			oldest = e
		}
	}
	if free == nil {
		free = oldest
	}
	timeout := fragTimeoutV4
	if k.v6 {
		timeout = fragTimeoutV6
	}
	*free = fragEntry{used: true, key: k, expires: now.Add(timeout), total: -1}
	return free
}
