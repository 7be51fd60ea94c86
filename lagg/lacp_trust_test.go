package lagg_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/lagg/lacp"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// What a remote partner must not be able to do to an lacp lagg ("trust
// nothing from the wire"): take it over from an extra link, deadlock it by
// disagreeing on which links to use, strand it in fallback on the wrong
// port or on a loop, flood its log.

// logCapture is a slog handler that keeps every record.
type logCapture struct {
	mu sync.Mutex
	// +checklocks:mu
	recs []slog.Record
}

func (h *logCapture) Enabled(context.Context, slog.Level) bool { return true }

func (h *logCapture) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r.Clone())
	h.mu.Unlock()
	return nil
}

func (h *logCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logCapture) WithGroup(string) slog.Handler      { return h }

// lines returns the messages containing substr, with their attributes.
func (h *logCapture) lines(substr string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range h.recs {
		if !strings.Contains(r.Message, substr) {
			continue
		}
		var b strings.Builder
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
			return true
		})
		out = append(out, b.String())
	}
	return out
}

// pingLoss sends n pings from s to dst, one every interval (each waits that
// long for its reply), and returns how many got no reply.
func pingLoss(s *stack.Stack, dst netip.Addr, n int, interval time.Duration) int {
	lost := 0
	for range n {
		start := time.Now()
		if testkit.Ping(s, dst, interval) != nil {
			lost++
		}
		time.Sleep(time.Until(start.Add(interval)))
	}
	return lost
}

// closeWires closes both ends of the wires when the test ends; register it
// before the nodes using them, so it runs after they closed.
func closeWires(t *testing.T, ws ...*linkeptest.Wire) {
	t.Cleanup(func() {
		for _, w := range ws {
			w.SetPassing(false)
			w.SetLinkUp(false)
			w.A.Close()
			w.B.Close()
		}
	})
}

// TestLACPRogueLinkKeepsAggregate (real time, fast rate): A and B
// aggregate over two links. A third port of A comes up to a rogue lagg R
// announcing system priority 1. Before, NetBSD's rule (the lowest partner
// system priority wins) made R's one link the active aggregator: A stopped
// distributing to B and sent everything to R. Now (select stable, the
// default) A keeps B's aggregate: no ping A→B is lost, no data frame goes
// to R, and the mixed-partners alarm is raised in the status and logged
// once, however often R flaps.
func TestLACPRogueLinkKeepsAggregate(t *testing.T) {
	id := nextID()
	w0, w1, wr := newWire(id, 0), newWire(id, 1), newWire(id, 2)
	closeWires(t, w0, w1, wr)
	logs := &logCapture{}
	oa, ob, or := options(fmt.Sprintf("laggA%d", id), "lacp"), options(fmt.Sprintf("laggB%d", id), "lacp"), options(fmt.Sprintf("laggR%d", id), "lacp")
	oa.Logger = slog.New(logs)
	for _, o := range []*lagg.Options{&oa, &ob, &or} {
		o.LACP.FastRate = true
	}
	or.LACP.SystemPriority = 1
	a := newNode(t, oa, "10.0.0.1/24", keep([]linkep.Port{w0.A, w1.A}))
	b := newNode(t, ob, "10.0.0.2/24", keep([]linkep.Port{w0.B, w1.B}))
	r := newNode(t, or, "10.0.0.3/24", keep([]linkep.Port{wr.B}))
	testkit.WaitFor(t, 2*time.Second, "A and B distributing on both links", func() bool { return distributing(a.l) == 2 && distributing(b.l) == 2 })
	if err := testkit.Ping(a.s, b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := a.l.AddPort(keptPort{wr.A}, lagg.DefaultPriority); err != nil {
		t.Fatal(err)
	}
	rogue := wr.A.Name()
	testkit.WaitFor(t, 2*time.Second, "R's LACPDUs heard on the rogue port", func() bool {
		return lacpPort(t, a.l, rogue).Rx == "CURRENT"
	})
	start := time.Now()
	const pings = 20
	lost := pingLoss(a.s, b.addr.Addr(), pings, 150*time.Millisecond)
	t.Logf("measure: in-process lacp rogue link (system priority 1) next to a 2-link aggregate: %d of %d pings A→B lost in %v", lost, pings, time.Since(start).Round(time.Millisecond))
	if lost > 0 {
		t.Errorf("%d of %d pings lost with the rogue link up, want 0", lost, pings)
	}
	st := a.l.Status()
	if n := dataFrames(t, a.l, rogue); n != 0 {
		t.Errorf("%d data frames sent to the rogue link, want 0", n)
	}
	if distributing(a.l) != 2 || isDistributing(a.l, rogue) {
		t.Errorf("A: %d distributing, rogue %v; want B's 2 and not the rogue", distributing(a.l), isDistributing(a.l, rogue))
	}
	if st.LACP == nil || !st.LACP.PartnerMismatch || st.LACP.PartnerSystems != 2 || st.LACP.Select != "stable" {
		t.Fatalf("A's LACP status: %+v, want the partner mismatch alarm (2 systems) under select stable", st.LACP)
	}
	if string(st.LACP.Partner.System[:]) != string(b.l.LinkAddress()) {
		t.Errorf("active partner %v, want B %s", st.LACP.Partner, b.l.LinkAddress())
	}
	if isDistributing(r.l, wr.B.Name()) || r.l.Status().Up {
		t.Errorf("R distributes: A's side of the rogue link must never be in sync")
	}

	// R flaps its link: every return raises the alarm again; the log says
	// so at most once per 10 s.
	for range 10 {
		wr.SetLinkUp(false)
		wr.SetLinkUp(true)
		testkit.WaitFor(t, 2*time.Second, "R heard again", func() bool { return lacpPort(t, a.l, rogue).Rx == "CURRENT" })
	}
	if got := a.l.Status().LACP.PartnerMismatches; got < 5 {
		t.Errorf("PartnerMismatches: got %d after 10 flaps, want >= 5", got)
	}
	warn := logs.lines("different partner systems")
	t.Logf("alarm log lines (%d):\n%s", len(warn), strings.Join(warn, "\n"))
	if len(warn) != 1 {
		t.Errorf("%d alarm lines within seconds, want 1 (rate-limited to one per 10 s)", len(warn))
	} else if !strings.Contains(warn[0], rogue) || !strings.Contains(warn[0], "1,"+macString(r)) {
		t.Errorf("alarm line %q does not name the rogue port and R's system", warn[0])
	}
	if err := testkit.Ping(a.s, b.addr.Addr(), 5*time.Second); err != nil {
		t.Errorf("after the flaps: %v", err)
	}
}

// macString formats a node's lagg MAC as the alarm log does.
func macString(n *node) string {
	mac := n.l.LinkAddress()
	var b strings.Builder
	for i := 0; i < len(mac); i++ {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02x", mac[i])
	}
	return b.String()
}

// TestLACPControllingSystemPair (fake clock, 802.1AX-2014 6.6.1): two
// laggs, both max ports 1, with opposite port priorities: A prefers link 0,
// B link 1. Before, each selected its own favourite, neither was in sync
// where the other selected, and nothing ever distributed. Now the system
// with the better System Identifier (priority, then MAC) decides: both use
// its favourite link, the other stands by on both sides.
func TestLACPControllingSystemPair(t *testing.T) {
	for _, tc := range []struct {
		name string
		bPri uint16 // B's system priority; A has 32768
		want int    // the link both must use
	}{
		{"A controls (same priority, lower MAC)", 32768, 0},
		{"B controls (better system priority)", 100, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newFakeLACP(t, speeds(2), func(side int, o *lagg.Options) {
				o.LACP.MaxPorts = 1
				if side == 1 {
					o.LACP.SystemPriority = tc.bPri
				}
			})
			a, b := p.a.l, p.b.l
			prios := [2][2]uint16{{100, 200}, {200, 100}} // [side][link]
			for i := range 2 {
				if err := a.SetPortPriority(p.portA(i), prios[0][i]); err != nil {
					t.Fatal(err)
				}
				if err := b.SetPortPriority(p.portB(i), prios[1][i]); err != nil {
					t.Fatal(err)
				}
			}
			other := 1 - tc.want
			took := p.advanceUntil(t, 3*time.Second, fmt.Sprintf("link %d distributing on both sides", tc.want), func() bool {
				return isDistributing(a, p.portA(tc.want)) && isDistributing(b, p.portB(tc.want))
			})
			t.Logf("measure: in-process lacp max ports 1, opposite port priorities: link %d distributing on both sides %v after the priorities were set (fake clock)", tc.want, took)
			p.advance(t, 5*time.Second)
			for _, side := range []struct {
				l          *lagg.Lagg
				want, idle string
			}{{a, p.portA(tc.want), p.portA(other)}, {b, p.portB(tc.want), p.portB(other)}} {
				st := side.l.Status()
				if distributing(side.l) != 1 || !isDistributing(side.l, side.want) || !st.Up {
					t.Errorf("%s: %d distributing (want only %s), up %v", st.Name, distributing(side.l), side.want, st.Up)
				}
				if ps := st.Port(side.idle); ps.Flags&lagg.PortStandby == 0 || ps.LACP.Selected != "standby" {
					t.Errorf("%s: %s flags %v selection %s, want STANDBY", st.Name, side.idle, ps.Flags, ps.LACP.Selected)
				}
			}
			if err := testkit.Ping(p.a.s, p.b.addr.Addr(), 5*time.Second); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// scriptedPartner is an LACP partner written out by hand: on each of its
// links it answers every LACPDU the lagg sends (and sends one a second)
// with a PDU built with the lacp package's encoder. It aggregates (Sync,
// and Collecting and Distributing once the lagg is in sync) only on the
// links it selects; it never follows the lagg's choice.
type scriptedPartner struct {
	t     *testing.T
	sys   [6]byte
	prio  uint16
	key   uint16
	links []*scriptedLink
	kick  chan int
	stop  chan struct{}
	done  sync.WaitGroup
}

type scriptedLink struct {
	w        *linkeptest.Wire
	port     uint16 // partner port number
	portPrio uint16
	selected bool

	mu sync.Mutex
	// +checklocks:mu
	heard lacp.Info // the lagg's actor information, as last received
	// +checklocks:mu
	sent int
}

// newScriptedPartner drives the B ends of the wires; link i has port
// number i+1, the given port priority, and is aggregated if selected[i].
func newScriptedPartner(t *testing.T, ws []*linkeptest.Wire, prio uint16, portPrios []uint16, selected []bool) *scriptedPartner {
	sp := &scriptedPartner{t: t, sys: [6]byte{0x02, 0x5c, 0, 0, 0, 1}, prio: prio, key: 77,
		kick: make(chan int, 64), stop: make(chan struct{})}
	for i, w := range ws {
		l := &scriptedLink{w: w, port: uint16(i + 1), portPrio: portPrios[i], selected: selected[i]}
		sp.links = append(sp.links, l)
		w.SetObserver(func(from *linkeptest.WireEnd, frame []byte) {
			if from != w.A {
				return
			}
			pdu, err := lacp.DecodeLACPDU(frame)
			if err != nil {
				return
			}
			l.mu.Lock()
			l.heard = pdu.Actor
			l.mu.Unlock()
			select {
			case sp.kick <- i:
			default:
			}
		})
	}
	sp.done.Add(1)
	go sp.run()
	t.Cleanup(func() {
		close(sp.stop)
		sp.done.Wait()
		for _, w := range ws {
			w.SetObserver(nil)
		}
	})
	return sp
}

func (sp *scriptedPartner) run() {
	defer sp.done.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	sp.sendAll()
	for {
		select {
		case <-sp.stop:
			return
		case i := <-sp.kick:
			sp.send(sp.links[i])
		case <-tick.C:
			sp.sendAll()
		}
	}
}

func (sp *scriptedPartner) sendAll() {
	for _, l := range sp.links {
		sp.send(l)
	}
}

// send sends link l's LACPDU from the partner's end.
func (sp *scriptedPartner) send(l *scriptedLink) {
	l.mu.Lock()
	heard := l.heard
	l.sent++
	l.mu.Unlock()
	st := lacp.StateActivity | lacp.StateTimeout | lacp.StateAggregation
	if l.selected {
		st |= lacp.StateSync
		if heard.State&lacp.StateSync != 0 {
			st |= lacp.StateCollecting | lacp.StateDistributing
		}
	}
	pdu := lacp.LACPDU{Version: 1,
		Actor:   lacp.Info{SystemPriority: sp.prio, System: sp.sys, Key: sp.key, PortPriority: l.portPrio, Port: l.port, State: st},
		Partner: heard,
	}
	frame := pdu.AppendFrame(nil, [6]byte{0x02, 0x5c, 0, 0, 1, byte(l.port)})
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(frame)})
	var list stack.PacketBufferList
	list.PushBack(pkt)
	_, _ = l.w.B.WritePackets(list)
	pkt.DecRef()
}

// TestLACPScriptedPartnerControls (real time): a lagg with max ports 1
// preferring link 0 faces a hand-scripted partner with system priority 1
// (better than ours) that prefers link 1 by its port priorities and
// aggregates only there. The partner controls: the lagg must select link 1
// and distribute there, link 0 standing by. Before, the lagg kept link 0
// selected, which the partner never syncs: nothing ever distributed.
func TestLACPScriptedPartnerControls(t *testing.T) {
	id := nextID()
	ws := []*linkeptest.Wire{newWire(id, 0), newWire(id, 1)}
	closeWires(t, ws...)
	o := options(fmt.Sprintf("laggA%d", id), "lacp")
	o.LACP.FastRate = true
	o.LACP.MaxPorts = 1
	a := newNode(t, o, "10.0.0.1/24", keep([]linkep.Port{ws[0].A, ws[1].A}))
	if err := a.l.SetPortPriority(ws[0].A.Name(), 100); err != nil {
		t.Fatal(err)
	}
	if err := a.l.SetPortPriority(ws[1].A.Name(), 200); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	newScriptedPartner(t, ws, 1, []uint16{200, 100}, []bool{false, true})
	testkit.WaitFor(t, 3*time.Second, "link 1 distributing", func() bool { return isDistributing(a.l, ws[1].A.Name()) })
	t.Logf("measure: in-process lacp against a scripted controlling partner: link 1 distributing after %v", time.Since(start).Round(time.Millisecond))
	time.Sleep(1500 * time.Millisecond)
	st := a.l.Status()
	if distributing(a.l) != 1 || !st.Up {
		t.Errorf("%d ports distributing, up %v; want 1, true", distributing(a.l), st.Up)
	}
	ps0 := st.Port(ws[0].A.Name())
	if ps0.LACP.Selected != "standby" || ps0.Flags&lagg.PortDistributing != 0 {
		t.Errorf("link 0: %s flags %v, want standby", ps0.LACP.Selected, ps0.Flags)
	}
	ps1 := st.Port(ws[1].A.Name())
	if ps1.LACP.Actor.State&lacp.StateDistributing == 0 || ps1.LACP.Partner.State&lacp.StateDistributing == 0 {
		t.Errorf("link 1: actor %v partner %v, want both distributing", ps1.LACP.Actor.State, ps1.LACP.Partner.State)
	}
}

// fallbackPair is an lacp lagg A with fallback on, facing a failover lagg
// B (no LACP) with rx-all off, as an active-backup bond of a switch: B
// sends only on its active port and drops what arrives on the other.
// B's active port is link bActive.
func fallbackPair(t *testing.T, bActive int) *fakeLACP {
	t.Helper()
	p := newFakeLACP(t, speeds(2), func(side int, o *lagg.Options) {
		o.LACP.Fallback = true
		if side == 1 {
			o.Proto = lagg.ProtoFailover
			o.RxAll = false
		}
	})
	if err := p.b.l.SetPortPriority(p.portB(bActive), 100); err != nil {
		t.Fatal(err)
	}
	p.settle(t)
	if got := p.b.l.Status().TxPort; got != p.portB(bActive) {
		t.Fatalf("B transmits on %s, want %s", got, p.portB(bActive))
	}
	return p
}

// TestLACPFallbackFollowsPartner (fake clock): in fallback, A collects on
// every port and transmits where B's traffic arrives. B's active port is
// its second: the first ping B→A (B's ARP request arrives on link 1) moves
// A's transmit port there, and pings work both ways with no loss. B fails
// over to link 0: A follows B's announcement. Before, A fell back to link 0
// alone: B's traffic on link 1 was dropped and nothing crossed, whichever
// side pinged (the OVS active-backup runs losing 100%).
func TestLACPFallbackFollowsPartner(t *testing.T) {
	p := fallbackPair(t, 1)
	a, b := p.a.l, p.b.l
	took := p.advanceUntil(t, 6*time.Second, "fallback", func() bool { return a.Status().Up })
	t.Logf("measure: in-process lacp fallback up %v after link up (fake clock)", took)
	st := a.Status()
	for i := range 2 {
		ps := st.Port(p.portA(i))
		if ps.Flags&lagg.PortCollecting == 0 || !ps.LACP.Fallback {
			t.Errorf("%s: flags %v fallback %v, want COLLECTING in fallback", ps.Name, ps.Flags, ps.LACP.Fallback)
		}
	}
	if !isDistributing(a, p.portA(0)) {
		t.Errorf("before any traffic A transmits on %v, want the best port %s", st.Ports, p.portA(0))
	}
	if err := testkit.Ping(p.b.s, p.a.addr.Addr(), 5*time.Second); err != nil {
		t.Fatalf("ping B→A through B's second port: %v (is noteRx called from port.DeliverNetworkPacket? see lagg/rxhook.go)", err)
	}
	if !isDistributing(a, p.portA(1)) || isDistributing(a, p.portA(0)) {
		t.Errorf("after B's traffic on link 1: A distributing on link 0 %v, link 1 %v; want link 1 only", isDistributing(a, p.portA(0)), isDistributing(a, p.portA(1)))
	}
	const pings = 10
	if lost := pingLoss(p.a.s, p.b.addr.Addr(), pings, 200*time.Millisecond); lost > 0 {
		t.Errorf("A→B: %d of %d pings lost", lost, pings)
	}
	if lost := pingLoss(p.b.s, p.a.addr.Addr(), pings, 200*time.Millisecond); lost > 0 {
		t.Errorf("B→A: %d of %d pings lost", lost, pings)
	}
	if n := dataFrames(t, a, p.portA(1)); n == 0 {
		t.Errorf("A sent no data frames on link 1")
	}
	testkit.ServeEcho(t, p.b.listen(t, 7))
	testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte(strings.Repeat("fallback follows the partner ", 5000)))

	// B's active port moves to link 0 (its announcement arrives there).
	if err := b.SetPortPriority(p.portB(0), 10); err != nil {
		t.Fatal(err)
	}
	p.settle(t)
	testkit.WaitFor(t, 5*time.Second, "A transmitting on link 0 after B's failover", func() bool { return isDistributing(a, p.portA(0)) })
	if lost := pingLoss(p.a.s, p.b.addr.Addr(), pings, 200*time.Millisecond); lost > 0 {
		t.Errorf("A→B after B's failover: %d of %d pings lost", lost, pings)
	}
}

// TestLACPFallbackLooped (real time): A has fallback on; its ports 0 and 1
// are the two ends of one wire, port 2 leads to B, which runs failover (no
// LACP). Ports 0 and 1 hear A's own LACPDUs: they are looped, never collect
// or transmit, and A falls back on port 2 alone, without waiting for the
// looped ports. A lagg whose only ports are looped never comes up. Before,
// port 0 (the best) became the fallback port and A sent into the loop.
func TestLACPFallbackLooped(t *testing.T) {
	id := nextID()
	loop := linkeptest.NewWire(fmt.Sprintf("a%d.l0", id), fmt.Sprintf("a%d.l1", id), mac(1, 5), mac(1, 6),
		linkeptest.WireOptions{SpeedMbps: 1000, Logger: discard})
	w := newWire(id, 0)
	closeWires(t, loop, w)
	logs := &logCapture{}
	oa := options(fmt.Sprintf("laggA%d", id), "lacp")
	oa.Logger = slog.New(logs)
	oa.LACP.FastRate = true
	oa.LACP.Fallback = true
	a := newNode(t, oa, "10.0.0.1/24", keep([]linkep.Port{loop.A, loop.B}))
	start := time.Now()
	for time.Since(start) < 4*time.Second {
		if st := a.l.Status(); st.Up || distributing(a.l) != 0 {
			t.Fatalf("at %v: a lagg of two looped ports is up (%d distributing)", time.Since(start), distributing(a.l))
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := a.l.Status()
	for _, ps := range st.Ports {
		if !ps.LACP.Looped || ps.LACP.Counters.LoopbackRx == 0 || ps.Flags&(lagg.PortCollecting|lagg.PortDistributing) != 0 {
			t.Errorf("%s: looped %v, loopback rx %d, flags %v; want looped and idle", ps.Name, ps.LACP.Looped, ps.LACP.Counters.LoopbackRx, ps.Flags)
		}
	}
	if st.LACP.LoopedPorts != 2 {
		t.Errorf("LoopedPorts: got %d, want 2", st.LACP.LoopedPorts)
	}

	b := newNode(t, options(fmt.Sprintf("laggB%d", id), "failover"), "10.0.0.2/24", keep([]linkep.Port{w.B}))
	if err := a.l.AddPort(keptPort{w.A}, lagg.DefaultPriority+1); err != nil { // worse than the looped ports
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "fallback on the third port", func() bool { return a.l.Status().Up })
	if !isDistributing(a.l, w.A.Name()) || distributing(a.l) != 1 {
		t.Errorf("fallback: %d distributing, third port %v; want the third port alone", distributing(a.l), isDistributing(a.l, w.A.Name()))
	}
	if err := testkit.Ping(a.s, b.addr.Addr(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{loop.A.Name(), loop.B.Name()} {
		if n := dataFrames(t, a.l, name); n != 0 {
			t.Errorf("looped port %s sent %d data frames, want 0", name, n)
		}
	}
	lines := logs.lines("looped")
	t.Logf("looped log lines: %q", lines)
	if len(lines) != 1 {
		t.Errorf("%d looped log lines, want 1", len(lines))
	}
}
