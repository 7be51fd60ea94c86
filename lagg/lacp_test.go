package lagg_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/ulagg/ulagg/lagg"
)

func lacpPair(t *testing.T, n int, tweak func(side int, o *lagg.LACPOptions)) *pair {
	t.Helper()
	return newPair(t, "lacp", n, func(side int, o *lagg.Options) {
		o.Logger = slog.New(slog.DiscardHandler)
		o.LACP.FastRate = true
		if tweak != nil {
			tweak(side, &o.LACP)
		}
	})
}

// timeUntil polls cond every millisecond until it holds or d passes, and
// returns how long it took.
func timeUntil(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

func distributing(l *lagg.Lagg) int {
	n := 0
	for _, p := range l.Status().Ports {
		if p.Flags&lagg.PortDistributing != 0 {
			n++
		}
	}
	return n
}

func TestLACPNegotiatesAndCarries(t *testing.T) {
	for _, n := range []int{2, 4} {
		p := lacpPair(t, n, nil)
		took := timeUntil(t, time.Second, "all ports distributing", func() bool {
			return distributing(p.a.l) == n && distributing(p.b.l) == n
		})
		t.Logf("%d ports distributing after %v", n, took)
		st := p.a.l.Status()
		if st.LACP == nil || string(st.LACP.Partner.System[:]) != string(p.b.l.LinkAddress()) {
			t.Fatalf("partner: got %+v, want system %s", st.LACP, p.b.l.LinkAddress())
		}
		listenEcho(t, p.b, 7)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := gonet.DialContextTCP(ctx, p.a.s, fullAddr(p.b.addr, 7), ipv4.ProtocolNumber)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		msg := bytes.Repeat([]byte("x"), 100000)
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}
