package appliance

import (
	"crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
)

// SYN admission control, in front of the stack.
//
// Three things in gVisor grow with the rate of SYNs and have no setting: a
// listener queues SYNs without bound while they arrive faster than it
// handles them; every SYN-ACK (cookie or not) to a source whose ARP or
// neighbour solicitation goes unanswered waits on that neighbour entry; and
// every resolution given up starts a goroutine. So SYNs are counted before
// the stack sees them: a synGuard wraps each lagg's endpoint (as gVisor's
// link/nested does) and drops the SYNs (SYN set, ACK clear, IPv4 or IPv6,
// TCP right after the fixed header) beyond a budget shared by every lagg of
// the appliance. Everything else passes untouched.
//
// The budget has two buckets of limits.syn_rate a second, bursts of
// limits.syn_burst:
//
//   - known: for SYNs from sources the stack completed a handshake with
//     lately (it sent them a TCP segment with ACK set and SYN and RST clear,
//     which it can only do once their link address was resolved and the
//     peer answered a SYN-ACK): they cost no ARP. A known source whose
//     bucket is empty falls back on the other one;
//   - unknown: every other SYN.
//
// A flood of spoofed sources drains the unknown bucket but not the known
// one, so clients that were served lately keep being served; a new client
// competes with the flood for the unknown bucket (and its SYN is retried).
// At most twice the rate reaches the stack, whatever the flood.
//
// Known sources live in a fixed table (synKnownSlots, two candidate slots
// per address under a keyed hash, the older replaced), learnt from the
// transmit path and forgotten after synKnownTTL; an address the stack keeps
// talking to is refreshed at most once per synKnownRefresh. A host that
// answers ARP for spoofed addresses and completes handshakes from them can
// make them known: the known bucket still bounds what they get.
//
// The per-frame paths neither lock nor allocate (synguard_test.go checks
// with testing.AllocsPerRun): the buckets are GCRA cells updated by
// compare-and-swap, the table is atomics, and headers are read by copying
// at most synPeekLen bytes from the packet's views onto the stack.
const (
	synKnownSlots   = 4096 // power of two
	synKnownTTL     = 2 * time.Minute
	synKnownRefresh = time.Second
	synPeekLen      = 18 + 60 + 14 // Ethernet + one tag, IPv4 with options, TCP through the flags
)

// synBudget is the appliance's SYN admission state, shared by its laggs.
type synBudget struct {
	interval int64 // ns between tokens
	tol      int64 // interval × burst
	epoch    time.Time
	seed     [2]uint64

	unknown gcra
	known   gcra

	drops      atomic.Uint64 // SYNs dropped
	knownAdmit atomic.Uint64 // SYNs admitted from the known bucket

	table [synKnownSlots]knownSlot
}

// gcra is a token bucket as a generic cell rate algorithm: tat is the
// theoretical arrival time of the next SYN (ns since the epoch).
type gcra struct {
	tat atomic.Int64
	_   [56]byte // its own cache line
}

type knownSlot struct {
	key  atomic.Uint64 // keyed hash of the address | 1; 0 = empty
	seen atomic.Int64  // ns since the epoch
}

func newSYNBudget(l config.Limits) *synBudget {
	b := &synBudget{epoch: time.Now()}
	b.interval = max(int64(time.Second)/int64(l.SYNRateOrDefault()), 1)
	b.tol = b.interval * int64(l.SYNBurstOrDefault())
	var s [16]byte
	_, _ = rand.Read(s[:]) // never fails (Go 1.24+)
	b.seed = [2]uint64{binary.LittleEndian.Uint64(s[:8]), binary.LittleEndian.Uint64(s[8:])}
	return b
}

// now returns the monotonic time since the epoch.
func (b *synBudget) now() int64 { return int64(time.Since(b.epoch)) }

// take takes a token at now if there is one.
func (g *gcra) take(now, interval, tol int64) bool {
	for {
		t := g.tat.Load()
		next := max(t, now) + interval
		if next-now > tol {
			return false
		}
		if g.tat.CompareAndSwap(t, next) {
			return true
		}
	}
}

// admit decides on a SYN from the address src (4 or 16 bytes).
func (b *synBudget) admit(src []byte) bool {
	now := b.now()
	if b.isKnown(b.key(src), now) && b.known.take(now, b.interval, b.tol) {
		b.knownAdmit.Add(1)
		return true
	}
	if b.unknown.take(now, b.interval, b.tol) {
		return true
	}
	b.drops.Add(1)
	return false
}

// key hashes an address (4 or 16 bytes) with the budget's seed, so that
// which addresses share slots cannot be chosen from outside.
func (b *synBudget) key(a []byte) uint64 {
	var hi, lo uint64
	switch len(a) {
	case 4:
		lo = uint64(binary.BigEndian.Uint32(a))
	case 16:
		hi, lo = binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	}
	h := mix64(lo ^ b.seed[0])
	h = mix64(h ^ hi ^ b.seed[1] ^ uint64(len(a)))
	return h | 1
}

// mix64 is SplitMix64's finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (b *synBudget) slots(k uint64) (*knownSlot, *knownSlot) {
	const mask = synKnownSlots - 1
	return &b.table[k&mask], &b.table[(k>>32)&mask]
}

func (b *synBudget) isKnown(k uint64, now int64) bool {
	s1, s2 := b.slots(k)
	for _, s := range [2]*knownSlot{s1, s2} {
		if s.key.Load() == k {
			return now-s.seen.Load() < int64(synKnownTTL)
		}
	}
	return false
}

// learn records that the stack reached the address of key at now. Two
// writers racing on a slot may leave one's key with the other's time: both
// are recent, so no harm.
func (b *synBudget) learn(k uint64, now int64) {
	s1, s2 := b.slots(k)
	for _, s := range [2]*knownSlot{s1, s2} {
		if s.key.Load() == k {
			if now-s.seen.Load() >= int64(synKnownRefresh) {
				s.seen.Store(now)
			}
			return
		}
	}
	victim := s1
	if s2.seen.Load() < s1.seen.Load() || s2.key.Load() == 0 {
		victim = s2
	}
	victim.seen.Store(now)
	victim.key.Store(k)
}

// peek copies the packet's bytes from off (counted from the start of its
// headers) into dst without pulling its views together (PullUp may copy a
// shared chunk) and returns how many it copied.
func peek(pkt *gstack.PacketBuffer, off int, dst []byte) int {
	vl, base := pkt.AsViewList()
	off += base
	n := 0
	for v := vl.Front(); v != nil && n < len(dst); v = v.Next() {
		s := v.AsSlice()
		if off >= len(s) {
			off -= len(s)
			continue
		}
		n += copy(dst[n:], s[off:])
		off = 0
	}
	return n
}

// tcpInfo parses an IPv4 or IPv6 packet in b (what was copied of it) and
// returns its source and destination addresses and TCP flags, ok false if
// it is not a first-fragment TCP segment with a header long enough to read
// the flags (IPv6 extension headers are not followed).
func tcpInfo(proto tcpip.NetworkProtocolNumber, b []byte) (src, dst []byte, flags uint8, ok bool) {
	switch proto {
	case header.IPv4ProtocolNumber:
		if len(b) < header.IPv4MinimumSize || b[0]>>4 != 4 || b[9] != uint8(header.TCPProtocolNumber) {
			return nil, nil, 0, false
		}
		if binary.BigEndian.Uint16(b[6:])&0x1fff != 0 {
			return nil, nil, 0, false // not the first fragment
		}
		ihl := int(b[0]&0xf) * 4
		if ihl < header.IPv4MinimumSize || len(b) < ihl+14 {
			return nil, nil, 0, false
		}
		return b[12:16], b[16:20], b[ihl+13], true
	case header.IPv6ProtocolNumber:
		if len(b) < header.IPv6MinimumSize+14 || b[0]>>4 != 6 || b[6] != uint8(header.TCPProtocolNumber) {
			return nil, nil, 0, false
		}
		return b[8:24], b[24:40], b[header.IPv6MinimumSize+13], true
	}
	return nil, nil, 0, false
}

const (
	tcpFlagSYN = uint8(header.TCPFlagSyn)
	tcpFlagRST = uint8(header.TCPFlagRst)
	tcpFlagACK = uint8(header.TCPFlagAck)
)

// admitRx reports whether an inbound packet (its link header consumed)
// may reach the stack.
// back, when set, drops the admitted SYNs that nic has no route back for
// (noroute.go).
func (b *synBudget) admitRx(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer, back *routeBack, nic tcpip.NICID) bool {
	if proto != header.IPv4ProtocolNumber && proto != header.IPv6ProtocolNumber {
		return true
	}
	var buf [synPeekLen]byte
	n := peek(pkt, pkt.HeaderSize(), buf[:])
	src, _, flags, ok := tcpInfo(proto, buf[:n])
	if !ok || flags&(tcpFlagSYN|tcpFlagACK) != tcpFlagSYN {
		return true
	}
	if !b.admit(src) {
		return false
	}
	return back == nil || back.admitSYN(nic, proto, buf[:n])
}

// learnTx learns the destination of an outbound Ethernet frame that is a
// TCP segment of a connection past its handshake. now is computed once per
// batch, when first needed.
func (b *synBudget) learnTx(pkt *gstack.PacketBuffer, now *int64) {
	var buf [synPeekLen]byte
	n := peek(pkt, 0, buf[:])
	f := buf[:n]
	if len(f) < header.EthernetMinimumSize {
		return
	}
	off := 12
	et := binary.BigEndian.Uint16(f[off:])
	if et == 0x8100 || et == 0x88a8 { // 802.1Q, 802.1ad
		off += 4
		if len(f) < off+2 {
			return
		}
		et = binary.BigEndian.Uint16(f[off:])
	}
	_, dst, flags, ok := tcpInfo(tcpip.NetworkProtocolNumber(et), f[off+2:])
	if !ok || flags&(tcpFlagSYN|tcpFlagRST|tcpFlagACK) != tcpFlagACK {
		return
	}
	if *now == 0 {
		*now = b.now()
	}
	b.learn(b.key(dst), *now)
}

// synGuard is a lagg's endpoint as the stack's NIC sees it: everything is
// the child's but DeliverNetworkPacket, which drops the SYNs over the
// budget, and WritePackets, which learns known sources on the way out.
type synGuard struct {
	child gstack.LinkEndpoint
	b     *synBudget
	disp  atomic.Pointer[dispatcherRef]
	// back and nic, set before the NIC is created, check that a SYN can
	// be answered (noroute.go); back nil checks nothing.
	back *routeBack
	nic  tcpip.NICID
}

type dispatcherRef struct{ d gstack.NetworkDispatcher }

var (
	_ gstack.LinkEndpoint      = (*synGuard)(nil)
	_ gstack.GSOEndpoint       = (*synGuard)(nil)
	_ gstack.NetworkDispatcher = (*synGuard)(nil)
)

func newSYNGuard(child gstack.LinkEndpoint, b *synBudget) *synGuard {
	return &synGuard{child: child, b: b}
}

// DeliverNetworkPacket implements stack.NetworkDispatcher: the per-frame
// receive path.
func (g *synGuard) DeliverNetworkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	r := g.disp.Load()
	if r == nil || !g.b.admitRx(proto, pkt, g.back, g.nic) {
		return
	}
	r.d.DeliverNetworkPacket(proto, pkt)
}

// DeliverLinkPacket implements stack.NetworkDispatcher.
func (g *synGuard) DeliverLinkPacket(proto tcpip.NetworkProtocolNumber, pkt *gstack.PacketBuffer) {
	if r := g.disp.Load(); r != nil {
		r.d.DeliverLinkPacket(proto, pkt)
	}
}

// Attach implements stack.LinkEndpoint: the child delivers to g while the
// stack is attached, and is detached with it.
func (g *synGuard) Attach(d gstack.NetworkDispatcher) {
	if d == nil {
		g.disp.Store(nil)
		g.child.Attach(nil)
		return
	}
	g.disp.Store(&dispatcherRef{d})
	g.child.Attach(g)
}

// IsAttached implements stack.LinkEndpoint.
func (g *synGuard) IsAttached() bool { return g.disp.Load() != nil }

// WritePackets implements stack.LinkEndpoint: the per-frame transmit path.
func (g *synGuard) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	var now int64
	for _, pkt := range pkts.AsSlice() {
		if pkt.NetworkProtocolNumber == header.IPv4ProtocolNumber || pkt.NetworkProtocolNumber == header.IPv6ProtocolNumber {
			g.b.learnTx(pkt, &now)
		}
	}
	return g.child.WritePackets(pkts)
}

// The rest is the child's.

func (g *synGuard) MTU() uint32                                   { return g.child.MTU() }
func (g *synGuard) SetMTU(mtu uint32)                             { g.child.SetMTU(mtu) }
func (g *synGuard) MaxHeaderLength() uint16                       { return g.child.MaxHeaderLength() }
func (g *synGuard) LinkAddress() tcpip.LinkAddress                { return g.child.LinkAddress() }
func (g *synGuard) SetLinkAddress(a tcpip.LinkAddress)            { g.child.SetLinkAddress(a) }
func (g *synGuard) Capabilities() gstack.LinkEndpointCapabilities { return g.child.Capabilities() }
func (g *synGuard) Wait()                                         { g.child.Wait() }
func (g *synGuard) ARPHardwareType() header.ARPHardwareType       { return g.child.ARPHardwareType() }
func (g *synGuard) AddHeader(pkt *gstack.PacketBuffer)            { g.child.AddHeader(pkt) }
func (g *synGuard) ParseHeader(pkt *gstack.PacketBuffer) bool     { return g.child.ParseHeader(pkt) }
func (g *synGuard) Close()                                        { g.child.Close() }
func (g *synGuard) SetOnCloseAction(f func())                     { g.child.SetOnCloseAction(f) }

// GSOMaxSize implements stack.GSOEndpoint.
func (g *synGuard) GSOMaxSize() uint32 {
	if e, ok := g.child.(gstack.GSOEndpoint); ok {
		return e.GSOMaxSize()
	}
	return 0
}

// SupportedGSO implements stack.GSOEndpoint.
func (g *synGuard) SupportedGSO() gstack.SupportedGSO {
	if e, ok := g.child.(gstack.GSOEndpoint); ok {
		return e.SupportedGSO()
	}
	return gstack.GSONotSupported
}

// synAdmissionReason is the reason label of the SYNs the guard dropped in
// ulagg_stack_drops_total.
const synAdmissionReason = "syn_admission"

// SYNAdmissionDrops returns how many TCP SYNs the appliance dropped before
// its stack saw them, over limits.syn_rate.
func (a *Appliance) SYNAdmissionDrops() uint64 { return a.syn.drops.Load() }
