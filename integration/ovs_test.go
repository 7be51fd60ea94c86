package integration

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/lagg/lacp"
)

// ovsTransferSize is the size of the verified echo transfer through OVS.
const ovsTransferSize = 256 << 20

// TestOVSLACP: ulagg with 2 and 4 AF_PACKET ports negotiates LACP (fast
// rate) with an Open vSwitch bond (lacp=active, balance-tcp). Both sides
// report every member current and distributing with the other as partner;
// our PDUs follow the switch's fast rate (1/s); a kernel host behind OVS
// pings the lagg and runs a 256 MiB TCP echo through it, verified byte for
// byte, while the member the flow uses is pulled (carrier down on the lagg's
// veth): ulagg stops using it at once and the transfer finishes intact.
// Measured: relink (carrier up) to all distributing on both sides, the
// pull to out of distribution, and the transfer's stall.
func TestOVSLACP(t *testing.T) {
	for _, n := range []int{2, 4} {
		t.Run(fmt.Sprintf("%dports", n), func(t *testing.T) {
			o := ovsStart(t, n, "fast")
			lc := laggConfig(config.ProtoLACP, o.ports...)
			lc.LACP.Rate = "fast"
			start := time.Now()
			ap := startAppliance(t, lc, ovsAppOptions(o))
			mac := ap.l.Status().MAC.String()
			ulagg, sw := ovsConverge(t, o, ap.l, start, 10*time.Second)
			conv := time.Now()
			t.Logf("measure: ovs lacp %d ports: appliance start to all distributing: ulagg %v, ovs %v", n, ulagg, sw)

			// Both sides agree on who is who.
			show, err := o.lacpShow()
			if err != nil {
				t.Fatal(err)
			}
			if show.status != "active negotiated" || show.time != "fast" {
				t.Errorf("ovs bond: status %q lacp_time %q, want active negotiated, fast", show.status, show.time)
			}
			st := ap.l.Status()
			if got := net.HardwareAddr(st.LACP.Partner.System[:]).String(); !strings.EqualFold(got, show.sysID) {
				t.Errorf("ulagg's partner system %s, want OVS's sys_id %s", got, show.sysID)
			}
			const full = lacp.StateActivity | lacp.StateTimeout | lacp.StateAggregation |
				lacp.StateSync | lacp.StateCollecting | lacp.StateDistributing
			if !testkit.Poll(2*time.Second, func() bool {
				for _, ps := range ap.l.Status().Ports {
					if ps.LACP.Partner.State != full || ps.LACP.Actor.State != full {
						return false
					}
				}
				return true
			}) {
				for _, ps := range ap.l.Status().Ports {
					t.Errorf("%s: actor %v partner %v, want %v both", ps.Name, ps.LACP.Actor.State, ps.LACP.Partner.State, full)
				}
			}
			for _, m := range show.members {
				if !strings.EqualFold(m.partnerSysID, mac) {
					t.Errorf("ovs member %s: partner %s, want the lagg %s", m.name, m.partnerSysID, mac)
				}
			}

			pingOK(t, o.host, 5)

			// Relink: every member's carrier goes and comes back. Not
			// within a second of the start-up exchange, whose PDUs used up
			// the 3 per second the standard allows (the relink would then
			// wait for the limit). ulagg sees its carrier within
			// milliseconds; OVS often notices its members' carrier only ~1 s
			// after `ip link set up` (its log: "carrier state is DOWN,
			// dropping received LACP PDU", then "link state up" a second
			// later), which is what its number shows.
			time.Sleep(time.Until(conv.Add(1100 * time.Millisecond)))
			for _, m := range o.member {
				setLink(t, o.sw, m, "down")
			}
			testkit.WaitFor(t, 5*time.Second, "ulagg lagg down", func() bool { return !ap.l.Status().Up && ovsDistributing(ap.l) == 0 })
			relink := time.Now()
			for _, m := range o.member {
				setLink(t, o.sw, m, "up")
			}
			ulagg, sw = ovsConverge(t, o, ap.l, relink, 10*time.Second)
			t.Logf("measure: ovs lacp %d ports: carrier up to all distributing: ulagg %v, ovs %v", n, ulagg, sw)

			pingOK(t, o.host, 5)
			time.Sleep(time.Until(relink.Add(1100 * time.Millisecond)))
			ovsEchoWithPull(t, o, ap.l, ovsTransferSize, uint64(400+n))
		})
	}
}

// TestOVSLACPSlow: with OVS at lacp-time=slow (and ulagg at the slow rate)
// the bond negotiates too, and ulagg then sends an LACPDU only every 30 s:
// at most 2 per port in the 35 s after convergence (the 1 s periodic PDU of
// the start-up, then the 30 s one), the periodic interval measured on the
// lagg's capture hook.
func TestOVSLACPSlow(t *testing.T) {
	o := ovsStart(t, 2, "slow")
	lc := laggConfig(config.ProtoLACP, o.ports...)
	lc.LACP.Rate = "slow"
	start := time.Now()
	ap := startAppliance(t, lc, ovsAppOptions(o))

	var mu sync.Mutex
	pdus := map[string][]time.Time{}
	stop := ap.l.Capture("", func(at time.Time, port string, dir lagg.Direction, frame []byte) {
		if dir == lagg.Out && len(frame) > 14 && binary.BigEndian.Uint16(frame[12:]) == 0x8809 && frame[14] == lacp.SubtypeLACP {
			mu.Lock()
			pdus[port] = append(pdus[port], at)
			mu.Unlock()
		}
	})
	defer stop()
	captured := func(port string) []time.Time {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(pdus[port])
	}

	ulagg, sw := ovsConverge(t, o, ap.l, start, 10*time.Second)
	conv := time.Now()
	t.Logf("measure: ovs lacp slow 2 ports: appliance start to all distributing: ulagg %v, ovs %v", ulagg, sw)
	show, err := o.lacpShow()
	if err != nil {
		t.Fatal(err)
	}
	if show.time != "slow" {
		t.Errorf("ovs lacp_time %q, want slow", show.time)
	}
	for _, m := range show.members {
		if slices.Contains(m.partnerState, "timeout") || slices.Contains(m.actorState, "timeout") {
			t.Errorf("ovs member %s: actor %v partner %v, want long timeouts on both", m.name, m.actorState, m.partnerState)
		}
	}
	pingOK(t, o.host, 3)

	before := map[string]uint64{}
	for _, ps := range ap.l.Status().Ports {
		before[ps.Name] = ps.LACP.Counters.LACPDUsTx
		if ps.LACP.Partner.State&lacp.StateTimeout != 0 {
			t.Errorf("%s: partner state %v, want OVS's long timeout", ps.Name, ps.LACP.Partner.State)
		}
	}
	// Wait for every port's 30 s periodic PDU, then to the end of the window.
	testkit.WaitFor(t, 40*time.Second, "a periodic LACPDU 20 s or more after convergence on every port", func() bool {
		for _, p := range o.ports {
			c := captured(p)
			if len(c) == 0 || c[len(c)-1].Sub(conv) < 20*time.Second {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Until(conv.Add(35 * time.Second)))
	for _, ps := range ap.l.Status().Ports {
		sent := ps.LACP.Counters.LACPDUsTx - before[ps.Name]
		c := captured(ps.Name)
		var gaps []time.Duration
		for i := 1; i < len(c); i++ {
			gaps = append(gaps, c[i].Sub(c[i-1]).Round(time.Millisecond))
		}
		t.Logf("measure: ovs lacp slow: %s sent %d LACPDUs in the 35 s after convergence; intervals between captured PDUs %v", ps.Name, sent, gaps)
		if sent < 1 || sent > 2 {
			t.Errorf("%s: %d LACPDUs in 35 s with a slow partner, want 1 or 2 (every 30 s)", ps.Name, sent)
		}
		if len(gaps) == 0 {
			t.Errorf("%s: fewer than 2 LACPDUs captured", ps.Name)
			continue
		}
		if last := gaps[len(gaps)-1]; last < 29*time.Second || last > 31*time.Second {
			t.Errorf("%s: last periodic interval %v, want 30 s", ps.Name, last)
		}
	}
	if !o.allDistributing(ap.l.Status().MAC.String()) || ovsDistributing(ap.l) != len(o.ports) {
		t.Errorf("not all distributing after 35 s at the slow rate")
	}
	pingOK(t, o.host, 3)
}

// ovsAppOptions opens the lagg's ports in the lagg namespace without host
// GSO: the kernel would pass our 64 KB GSO frames across the veth whole,
// and OVS, reading its members with plain AF_PACKET sockets, drops them
// ("Dropped packet: Too big. GRO/TSO enabled?"). A real NIC would segment
// them.
func ovsAppOptions(o *ovsSwitch) appOptions { return appOptions{netns: o.lag, disableGSO: true} }

// ovsDistributing counts l's ports flagged DISTRIBUTING.
func ovsDistributing(l *lagg.Lagg) int {
	n := 0
	for _, p := range l.Status().Ports {
		if p.Flags&lagg.PortDistributing != 0 {
			n++
		}
	}
	return n
}

// ovsConverge waits until every port distributes on the ulagg side and
// OVS shows every member current and distributing with the lagg as its
// partner, and returns how long after since each side got there.
func ovsConverge(t *testing.T, o *ovsSwitch, l *lagg.Lagg, since time.Time, timeout time.Duration) (ulagg, sw time.Duration) {
	t.Helper()
	mac := l.Status().MAC.String()
	deadline := since.Add(timeout)
	for ulagg == 0 || sw == 0 {
		if ulagg == 0 && ovsDistributing(l) == len(o.ports) && l.Status().Up {
			ulagg = time.Since(since)
		}
		if sw == 0 && o.allDistributing(mac) {
			sw = time.Since(since)
		}
		if time.Now().After(deadline) {
			show, _ := o.appctl("lacp/show", o.bond)
			t.Fatalf("not all distributing within %v (ulagg after %v, ovs after %v)\nulagg: %+v\novs:\n%s", timeout, ulagg, sw, l.Status().Ports, show)
		}
		time.Sleep(time.Millisecond)
	}
	return ulagg, sw
}

// ovsDataFrames is what a port sent besides LACP's own frames.
func ovsDataFrames(ps *lagg.PortStatus) uint64 {
	if ps.LACP == nil {
		return ps.Counters.TxFrames
	}
	return ps.Counters.TxFrames - ps.LACP.Counters.LACPDUsTx - ps.LACP.Counters.MarkerResponseTx
}

// ovsEchoWindow bounds the bytes the host has sent but not yet seen come
// back. Without it gVisor's TCP deadlocks the echo after a burst of loss
// (OVS's AF_PACKET sockets overflow on 2 busy cores; seen in half the
// runs): the echo service stops reading while its replies are being
// recovered, the lagg's receive window closes and gVisor retracts it
// (advertises 0 after ~280 KB), so the host's segments, already sent up to
// the old edge, are unacceptable; gVisor drops them, ACK field included
// (RFC 793 asks to still process it), never learns that its own data was
// acknowledged, and both sides back off forever. With the echo's input
// bounded by what came back, the window never closes.
const ovsEchoWindow = 256 << 10

// ovsEchoWithPull runs the echo transfer, pulls the member its flow uses on
// the ulagg side once a quarter is through, measures the failover and
// checks the transfer ends intact.
func ovsEchoWithPull(t *testing.T, o *ovsSwitch, l *lagg.Lagg, size int64, seed uint64) {
	t.Helper()
	start := time.Now()
	c, err := lab.Dial(o.host, "tcp4", net.JoinHostPort(laggIP, strconv.Itoa(echoPort)))
	if err != nil {
		t.Fatalf("dial tcp-echo: %v", err)
	}
	e := testkit.StartEcho(t, c, testkit.TransferOptions{Name: "echo through OVS", Seed: seed, Size: size, Window: ovsEchoWindow})
	if err := e.Await(size/4, time.Minute); err != nil {
		o.diag(t, l)
		t.Fatalf("echo: %d bytes sent: %v", e.Sent(), err)
	}

	// The flow's port: ulagg hashes both directions of the connection
	// (data and ACKs) to one port.
	tx := func() map[string]uint64 {
		m := map[string]uint64{}
		st := l.Status()
		for i := range st.Ports {
			m[st.Ports[i].Name] = ovsDataFrames(&st.Ports[i])
		}
		return m
	}
	t0 := tx()
	time.Sleep(50 * time.Millisecond)
	t1 := tx()
	idx := 0
	for i, p := range o.ports {
		if t1[p]-t0[p] > t1[o.ports[idx]]-t0[o.ports[idx]] {
			idx = i
		}
	}
	pulled := o.ports[idx]
	pdus, pdusAt := l.Status().Ports, time.Now()

	base := tx()
	got0 := e.Received()
	at := linkDown(t, o.sw, o.member[idx])
	var out, moved, resumed time.Duration
	var stall time.Duration
	last, lastGot := at, got0
	for deadline := at.Add(20 * time.Second); out == 0 || moved == 0 || resumed == 0; {
		now := time.Now()
		if now.After(deadline) {
			o.diag(t, l)
			t.Fatalf("after pulling %s: out of distribution %v, frame on another port %v, echo +4MiB %v", pulled, out, moved, resumed)
		}
		st := l.Status()
		if out == 0 && st.Port(pulled).Flags&lagg.PortDistributing == 0 {
			out = now.Sub(at)
		}
		if moved == 0 {
			for i := range st.Ports {
				if p := &st.Ports[i]; p.Name != pulled && ovsDataFrames(p) > base[p.Name] {
					moved = now.Sub(at)
				}
			}
		}
		if g := e.Received(); g != lastGot {
			stall = max(stall, now.Sub(last))
			last, lastGot = now, g
		}
		if resumed == 0 && e.Received() >= got0+4<<20 {
			resumed = now.Sub(at)
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Logf("measure: ovs lacp %d ports: pulled %s during the echo: out of distribution %v, first data frame on another port %v, echo +4MiB %v, longest echo stall %v",
		len(o.ports), pulled, out, moved, resumed, stall)
	if out > 50*time.Millisecond {
		t.Errorf("the pulled port left distribution after %v, want within 50ms of the carrier loss", out)
	}

	select {
	case <-e.Done():
	case <-time.After(2 * time.Minute):
		t.Fatalf("echo not done within 2 min: %d of %d bytes back", e.Received(), size)
	}
	elapsed := time.Since(start)
	if _, err := e.Result(); err != nil {
		o.diag(t, l)
		t.Fatal(err)
	}
	t.Logf("measure: ovs lacp %d ports: %d MiB echoed (both ways) through OVS in %v, %.0f MB/s each way, one member pulled",
		len(o.ports), size>>20, elapsed.Round(time.Millisecond), float64(size)/1e6/elapsed.Seconds())

	// Our PDU rate follows the switch's fast timeout: about 1/s on the ports
	// that stayed up.
	after := l.Status()
	for i, ps := range after.Ports {
		if ps.Name == pulled {
			continue
		}
		sent := ps.LACP.Counters.LACPDUsTx - pdus[i].LACP.Counters.LACPDUsTx
		window := time.Since(pdusAt)
		if secs := window.Seconds(); float64(sent) < secs-2 || float64(sent) > secs+3 {
			t.Errorf("%s: %d LACPDUs in %v, want about 1/s with a fast partner", ps.Name, sent, window.Round(time.Millisecond))
		}
	}
	if st := after.Port(pulled); st.LinkUp || st.Flags&lagg.PortDistributing != 0 {
		t.Errorf("pulled port %s: link %v flags %v, want down and not distributing", pulled, st.LinkUp, st.Flags)
	}
	show, err := o.lacpShow()
	if err != nil {
		t.Fatal(err)
	}
	if m := show.members[o.member[idx]]; m == nil || m.mayEnable {
		t.Errorf("ovs still may enable the pulled member %s: %+v", o.member[idx], m)
	}

	// Plug it back: all distributing again.
	plug := time.Now()
	setLink(t, o.sw, o.member[idx], "up")
	ulagg, sw := ovsConverge(t, o, l, plug, 10*time.Second)
	t.Logf("measure: ovs lacp %d ports: pulled member back: all distributing after ulagg %v, ovs %v", len(o.ports), ulagg, sw)
}
