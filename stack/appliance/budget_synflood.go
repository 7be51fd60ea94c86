package appliance

import (
	"log/slog"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// A SYN flood makes gVisor create a half-open endpoint per SYN that fits
// a listener's backlog (svcBacklog), and answer the rest with SYN
// cookies, which hold no state. Half-open endpoints whose SYN-ACK waits
// for a neighbour that never answers (spoofed on-link sources) are torn
// down in bulk when their resolution is given up, and new ones take their
// places at once: the churn costs far more memory and goroutines than the
// cookies. So while a flood lasts, the guard has the stack answer every
// SYN with a cookie (tcpip.TCPAlwaysUseSynCookies), as Linux does when a
// SYN queue overflows. Connections opened by a cookie do without window
// scaling and SACK (the cookie cannot carry them); the services' buffers
// (svcConnBuffer) need neither, and outside a flood nothing changes.
const (
	synGuardTick     = 200 * time.Millisecond
	synGuardCalm     = 10 * time.Second // below synGuardCalmRate this long ends flood mode
	synGuardCalmRate = 1000             // SYNs a second
)

// synFloodGuard watches the stack's listen-queue overflow counters.
type synFloodGuard struct {
	s    *gstack.Stack
	log  *slog.Logger
	stop chan struct{}
	done chan struct{}
}

func startSYNFloodGuard(s *gstack.Stack, log *slog.Logger) *synFloodGuard {
	g := &synFloodGuard{s: s, log: log, stop: make(chan struct{}), done: make(chan struct{})}
	go g.routine()
	return g
}

// close stops the guard and leaves the stack answering SYNs as usual.
func (g *synFloodGuard) close() {
	close(g.stop)
	<-g.done
}

// overflows counts SYNs the stack answered with a cookie or dropped for a
// full accept queue.
func (g *synFloodGuard) overflows() uint64 {
	st := g.s.Stats().TCP
	return st.ListenOverflowSynCookieSent.Value() + st.ListenOverflowSynDrop.Value()
}

func (g *synFloodGuard) set(on bool) {
	opt := tcpip.TCPAlwaysUseSynCookies(on)
	if err := g.s.SetTransportProtocolOption(tcp.ProtocolNumber, &opt); err != nil {
		g.log.Error("SYN cookies", "err", err)
	}
}

func (g *synFloodGuard) routine() {
	defer close(g.done)
	tk := time.NewTicker(synGuardTick)
	defer tk.Stop()
	flood := false
	last := g.overflows()
	var calmSince time.Time
	calm := uint64(synGuardCalmRate * synGuardTick / time.Second)
	for {
		select {
		case <-g.stop:
			if flood {
				g.set(false)
			}
			return
		case now := <-tk.C:
			n := g.overflows()
			delta := n - last
			last = n
			switch {
			case !flood && delta > 0:
				// A listener's backlog overflowed.
				flood, calmSince = true, time.Time{}
				g.set(true)
				g.log.Warn("SYN flood: a listen backlog overflowed; answering every SYN with a SYN cookie until it stops", "syns", delta)
			case flood && delta >= calm:
				calmSince = time.Time{}
			case flood && calmSince.IsZero():
				calmSince = now
			case flood && now.Sub(calmSince) >= synGuardCalm:
				flood = false
				g.set(false)
				g.log.Info("SYN flood over: SYN cookies only when a backlog overflows again")
			}
		}
	}
}
