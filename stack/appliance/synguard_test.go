package appliance

import (
	"encoding/binary"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
)

// synTestFrame builds an Ethernet frame with an IPv4 or IPv6 TCP segment
// from src to dst with flags.
func synTestFrame(v6 bool, src, dst []byte, flags uint8) []byte {
	var f []byte
	eth := make([]byte, 14)
	if v6 {
		binary.BigEndian.PutUint16(eth[12:], uint16(header.IPv6ProtocolNumber))
		ip := make([]byte, 40)
		ip[0] = 6 << 4
		binary.BigEndian.PutUint16(ip[4:], 20)
		ip[6] = uint8(header.TCPProtocolNumber)
		ip[7] = 64
		copy(ip[8:24], src)
		copy(ip[24:40], dst)
		f = append(eth, ip...)
	} else {
		binary.BigEndian.PutUint16(eth[12:], uint16(header.IPv4ProtocolNumber))
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], 40)
		ip[8] = 64
		ip[9] = uint8(header.TCPProtocolNumber)
		copy(ip[12:16], src)
		copy(ip[16:20], dst)
		f = append(eth, ip...)
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 7)
	tcp[12] = 5 << 4
	tcp[13] = flags
	return append(f, tcp...)
}

// rxPacket is an inbound packet as the lagg delivers it: link header
// consumed.
func rxPacket(t testing.TB, frame []byte) *gstack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	if _, ok := pkt.LinkHeader().Consume(header.EthernetMinimumSize); !ok {
		t.Fatal("short frame")
	}
	return pkt
}

// txPacket is an outbound packet as the lagg's WritePackets gets it: every
// header pushed (here: the frame as one pushed link header plus payload).
func txPacket(frame []byte) *gstack.PacketBuffer {
	pkt := gstack.NewPacketBuffer(gstack.PacketBufferOptions{ReserveHeaderBytes: len(frame)})
	copy(pkt.LinkHeader().Push(len(frame)), frame)
	pkt.NetworkProtocolNumber = tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(frame[12:]))
	return pkt
}

type countingDispatcher struct {
	mu sync.Mutex
	// +checklocks:mu
	n int
}

func (d *countingDispatcher) DeliverNetworkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {
	d.mu.Lock()
	d.n++
	d.mu.Unlock()
}

func (d *countingDispatcher) DeliverLinkPacket(tcpip.NetworkProtocolNumber, *gstack.PacketBuffer) {}

func (d *countingDispatcher) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n
}

// nullEndpoint is a child LinkEndpoint that writes nowhere.
type nullEndpoint struct {
	gstack.LinkEndpoint // nil: only what the tests call is implemented
	d                   gstack.NetworkDispatcher
}

func (e *nullEndpoint) Attach(d gstack.NetworkDispatcher) { e.d = d }
func (e *nullEndpoint) WritePackets(pkts gstack.PacketBufferList) (int, tcpip.Error) {
	return pkts.Len(), nil
}

var (
	sgLocal4 = []byte{10, 231, 0, 2}
	sgLegit4 = []byte{10, 231, 0, 3}
	sgLocal6 = []byte{0xfd, 15: 2}
	sgLegit6 = []byte{0xfd, 15: 3}
)

func spoofed4(i int) []byte { return []byte{10, 231, byte(i >> 8), byte(16 + i%240)} }

// TestSYNGuardBudget: SYNs beyond the burst are dropped and counted;
// other segments, and ARP, always pass.
func TestSYNGuardBudget(t *testing.T) {
	b := newSYNBudget(config.Limits{SYNRate: 1, SYNBurst: 10}) // no refill during the test
	child := &nullEndpoint{}
	g := newSYNGuard(child, b)
	d := &countingDispatcher{}
	g.Attach(d)
	if child.d != g {
		t.Fatal("the child does not deliver to the guard")
	}
	for i := range 100 {
		v6 := i%2 == 1
		f := synTestFrame(false, spoofed4(i), sgLocal4, uint8(header.TCPFlagSyn))
		if v6 {
			f = synTestFrame(true, []byte{0xfd, 14: byte(i), 15: 9}, sgLocal6, uint8(header.TCPFlagSyn))
		}
		pkt := rxPacket(t, f)
		g.DeliverNetworkPacket(protoOf(v6), pkt)
		pkt.DecRef()
	}
	if got := d.count(); got != 10 {
		t.Errorf("%d SYNs passed, want the burst of 10", got)
	}
	if got := b.drops.Load(); got != 90 {
		t.Errorf("%d SYNs dropped, want 90", got)
	}
	// Non-SYN TCP, SYN-ACK and non-TCP pass whatever the budget.
	for _, f := range [][]byte{
		synTestFrame(false, spoofed4(1), sgLocal4, uint8(header.TCPFlagAck)),
		synTestFrame(false, spoofed4(1), sgLocal4, uint8(header.TCPFlagSyn|header.TCPFlagAck)),
		synTestFrame(true, sgLegit6, sgLocal6, uint8(header.TCPFlagAck|header.TCPFlagPsh)),
	} {
		pkt := rxPacket(t, f)
		g.DeliverNetworkPacket(tcpip.NetworkProtocolNumber(binary.BigEndian.Uint16(f[12:])), pkt)
		pkt.DecRef()
	}
	arp := rxPacket(t, make([]byte, 14+28))
	g.DeliverNetworkPacket(header.ARPProtocolNumber, arp)
	arp.DecRef()
	if got := d.count(); got != 14 {
		t.Errorf("%d packets passed, want 14", got)
	}
	g.Attach(nil)
	if child.d != nil || g.IsAttached() {
		t.Error("detaching the guard does not detach the child")
	}
}

func protoOf(v6 bool) tcpip.NetworkProtocolNumber {
	if v6 {
		return header.IPv6ProtocolNumber
	}
	return header.IPv4ProtocolNumber
}

// TestSYNGuardKnownSource: once the stack has sent a source an ACK (a
// handshake done), that source's SYNs have their own bucket, which a flood
// from other sources does not drain; a SYN-ACK or RST sent does not make a
// source known.
func TestSYNGuardKnownSource(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		local, legit, other := sgLocal4, sgLegit4, []byte{10, 231, 0, 99}
		if v6 {
			local, legit, other = sgLocal6, sgLegit6, []byte{0xfd, 15: 99}
		}
		b := newSYNBudget(config.Limits{SYNRate: 1, SYNBurst: 5})
		child := &nullEndpoint{}
		g := newSYNGuard(child, b)
		d := &countingDispatcher{}
		g.Attach(d)
		var pkts gstack.PacketBufferList
		pkts.PushBack(txPacket(synTestFrame(v6, local, legit, uint8(header.TCPFlagAck|header.TCPFlagPsh))))
		pkts.PushBack(txPacket(synTestFrame(v6, local, other, uint8(header.TCPFlagSyn|header.TCPFlagAck))))
		pkts.PushBack(txPacket(synTestFrame(v6, local, other, uint8(header.TCPFlagRst|header.TCPFlagAck))))
		if _, err := g.WritePackets(pkts); err != nil {
			t.Fatal(err)
		}
		pkts.DecRef()
		proto := protoOf(v6)
		syn := func(src []byte) {
			pkt := rxPacket(t, synTestFrame(v6, src, local, uint8(header.TCPFlagSyn)))
			g.DeliverNetworkPacket(proto, pkt)
			pkt.DecRef()
		}
		for range 50 { // the flood drains the unknown bucket
			syn(other)
		}
		if got := d.count(); got != 5 {
			t.Fatalf("v6=%v: flood: %d SYNs passed, want 5", v6, got)
		}
		for range 3 {
			syn(legit)
		}
		if got := d.count(); got != 8 {
			t.Errorf("v6=%v: %d SYNs passed, want 8: the known source's were dropped", v6, got)
		}
		if got := b.knownAdmit.Load(); got != 3 {
			t.Errorf("v6=%v: %d SYNs admitted as known, want 3", v6, got)
		}
	}
}

// TestSYNGuardKnownExpiry: a known source is forgotten after synKnownTTL,
// and the table keeps the newer of two addresses that share a slot pair.
func TestSYNGuardKnownExpiry(t *testing.T) {
	b := newSYNBudget(config.Limits{})
	k := b.key(sgLegit4)
	b.learn(k, 1)
	if !b.isKnown(k, int64(synKnownTTL)) {
		t.Error("forgotten before the TTL")
	}
	if b.isKnown(k, int64(synKnownTTL)+2) {
		t.Error("still known after the TTL")
	}
	if b.key(sgLegit4) == b.key(sgLegit6) || b.key(sgLegit4) == b.key(sgLocal4) {
		t.Error("keys collide")
	}
	// Many addresses: the table stays bounded and recent ones are known.
	now := int64(time.Hour)
	for i := range 3 * synKnownSlots {
		b.learn(b.key(spoofed4(i)), now+int64(i))
	}
	recent := 0
	for i := 3*synKnownSlots - 100; i < 3*synKnownSlots; i++ {
		if b.isKnown(b.key(spoofed4(i)), now+int64(3*synKnownSlots)) {
			recent++
		}
	}
	if recent < 95 {
		t.Errorf("%d of the 100 most recent addresses known", recent)
	}
}

// TestSYNGuardRate: the token bucket lets limits.syn_rate through a second
// on average, after the burst.
func TestSYNGuardRate(t *testing.T) {
	b := newSYNBudget(config.Limits{SYNRate: 1000, SYNBurst: 10})
	var g gcra
	passed := 0
	for ns := int64(0); ns < int64(time.Second); ns += int64(10 * time.Microsecond) { // 100k offered a second
		if g.take(ns, b.interval, b.tol) {
			passed++
		}
	}
	if passed < 1000 || passed > 1011 {
		t.Errorf("%d passed in a second at 1000/s, burst 10", passed)
	}
}

// TestSYNGuardParse: fragments, IPv6 extension headers, short packets and
// VLAN-tagged transmit frames.
func TestSYNGuardParse(t *testing.T) {
	f := synTestFrame(false, sgLegit4, sgLocal4, uint8(header.TCPFlagSyn))
	ip := f[14:]
	if _, _, fl, ok := tcpInfo(header.IPv4ProtocolNumber, ip); !ok || fl != uint8(header.TCPFlagSyn) {
		t.Error("IPv4 SYN not parsed")
	}
	frag := append([]byte(nil), ip...)
	binary.BigEndian.PutUint16(frag[6:], 100)
	if _, _, _, ok := tcpInfo(header.IPv4ProtocolNumber, frag); ok {
		t.Error("a later fragment parsed as TCP")
	}
	if _, _, _, ok := tcpInfo(header.IPv4ProtocolNumber, ip[:30]); ok {
		t.Error("a truncated segment parsed")
	}
	f6 := synTestFrame(true, sgLegit6, sgLocal6, uint8(header.TCPFlagSyn))
	f6[14+6] = 0 // hop-by-hop options first
	if _, _, _, ok := tcpInfo(header.IPv6ProtocolNumber, f6[14:]); ok {
		t.Error("extension headers followed")
	}
	// A tagged frame on the way out.
	ack := synTestFrame(false, sgLocal4, sgLegit4, uint8(header.TCPFlagAck))
	tagged := append(append(append([]byte(nil), ack[:12]...), 0x81, 0x00, 0, 5), ack[12:]...)
	b := newSYNBudget(config.Limits{})
	var now int64
	pkt := txPacket(tagged)
	pkt.NetworkProtocolNumber = header.IPv4ProtocolNumber
	b.learnTx(pkt, &now)
	pkt.DecRef()
	if !b.isKnown(b.key(sgLegit4), b.now()) {
		t.Error("the destination of a tagged ACK was not learnt")
	}
}

// TestSYNGuardAllocs: the per-frame paths allocate nothing.
func TestSYNGuardAllocs(t *testing.T) {
	b := newSYNBudget(config.Limits{SYNRate: 1, SYNBurst: 1})
	g := newSYNGuard(&nullEndpoint{}, b)
	g.Attach(&countingDispatcher{})
	syn := rxPacket(t, synTestFrame(false, sgLegit4, sgLocal4, uint8(header.TCPFlagSyn)))
	defer syn.DecRef()
	syn6 := rxPacket(t, synTestFrame(true, sgLegit6, sgLocal6, uint8(header.TCPFlagSyn)))
	defer syn6.DecRef()
	ack := rxPacket(t, synTestFrame(false, sgLegit4, sgLocal4, uint8(header.TCPFlagAck)))
	defer ack.DecRef()
	var pkts gstack.PacketBufferList
	pkts.PushBack(txPacket(synTestFrame(false, sgLocal4, sgLegit4, uint8(header.TCPFlagAck))))
	pkts.PushBack(txPacket(synTestFrame(true, sgLocal6, sgLegit6, uint8(header.TCPFlagAck))))
	defer pkts.DecRef()
	if n := testing.AllocsPerRun(1000, func() {
		g.DeliverNetworkPacket(header.IPv4ProtocolNumber, syn) // mostly dropped
		g.DeliverNetworkPacket(header.IPv6ProtocolNumber, syn6)
		g.DeliverNetworkPacket(header.IPv4ProtocolNumber, ack)
		if _, err := g.WritePackets(pkts); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations per run", n)
	}
}

func BenchmarkSYNGuardRx(b *testing.B) {
	sb := newSYNBudget(config.Limits{})
	g := newSYNGuard(&nullEndpoint{}, sb)
	g.Attach(&countingDispatcher{})
	syn := rxPacket(b, synTestFrame(false, sgLegit4, sgLocal4, uint8(header.TCPFlagSyn)))
	defer syn.DecRef()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			g.DeliverNetworkPacket(header.IPv4ProtocolNumber, syn)
		}
	})
}
