package testkit_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	ustack "github.com/ulagg/ulagg/stack"
)

// recorder is a testing.TB that records failures instead of reporting
// them, so the kit's own failure paths can be checked. Its Fatal ends the
// calling goroutine, as testing's does; run code that may call it with
// recorder.run.
type recorder struct {
	testing.TB
	mu sync.Mutex
	// +checklocks:mu
	msgs []string
	// +checklocks:mu
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

func (r *recorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *recorder) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

// run calls f on a goroutine of its own, then the cleanups, last first,
// and returns the failures recorded.
func (r *recorder) run(f func()) []string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
	r.mu.Lock()
	cs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.msgs
}

func TestFakeClock(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := testkit.NewFakeClock(start)
	var got []string
	at := func(name string) func() {
		return func() { got = append(got, fmt.Sprintf("%s@%v", name, c.Now().Sub(start))) }
	}
	c.AfterFunc(3*time.Second, at("c"))
	c.AfterFunc(time.Second, at("a"))
	c.AfterFunc(2*time.Second, at("b1"))
	c.AfterFunc(2*time.Second, at("b2"))
	stopped := c.AfterFunc(2500*time.Millisecond, at("never"))
	c.AfterFunc(2*time.Second, func() {
		got = append(got, "chain")
		c.AfterFunc(500*time.Millisecond, at("chained"))
	})
	c.Advance(1500 * time.Millisecond)
	if want := "a@1s"; strings.Join(got, " ") != want {
		t.Errorf("after 1.5 s: got %q, want %q", got, want)
	}
	if now := c.Now().Sub(start); now != 1500*time.Millisecond {
		t.Errorf("Now after Advance(1.5s): got %v, want 1.5s", now)
	}
	if !stopped.Stop() {
		t.Errorf("Stop of a pending timer: got false, want true")
	}
	if stopped.Stop() {
		t.Errorf("second Stop: got true, want false")
	}
	if n := c.Pending(); n != 4 {
		t.Errorf("Pending: got %d, want 4", n)
	}
	if d, ok := c.NextDeadline(); !ok || d.Sub(start) != 2*time.Second {
		t.Errorf("NextDeadline: got %v %v, want 2s true", d.Sub(start), ok)
	}
	c.Advance(10 * time.Second)
	// The callback armed at 2 s for 2.5 s runs before the one at 3 s.
	want := "a@1s b1@2s b2@2s chain chained@2.5s c@3s"
	if strings.Join(got, " ") != want {
		t.Errorf("after 11.5 s: got %q, want %q", strings.Join(got, " "), want)
	}
	if c.Pending() != 0 {
		t.Errorf("Pending after all ran: %d", c.Pending())
	}
	ran := make(chan struct{})
	c.AfterFunc(0, func() { close(ran) })
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc(0) did not run without Advance")
	}
}

// loopback returns two ends of a kernel TCP connection on 127.0.0.1.
func loopback(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return testkit.Connect(t, ln, testkit.KernelDialer("tcp4", ln.Addr().String()))
}

func TestTransferKernel(t *testing.T) {
	testkit.CheckGoroutines(t)
	c, s := loopback(t)
	x := testkit.StartTransfer(t, c, s, testkit.TransferOptions{Seed: 1, Size: 8 << 20})
	x.WaitReceived(t, 1<<20, 10*time.Second)
	r := x.Wait(t, 30*time.Second)
	if r.Received != 8<<20 || r.Sent != 8<<20 {
		t.Errorf("got %d sent, %d verified, want 8 MiB each", r.Sent, r.Received)
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testkit.ServeEcho(t, ln)
	dial := testkit.KernelDialer("tcp4", ln.Addr().String())
	testkit.CheckEcho(t, dial, testkit.Bytes(3, 3<<20))
	ec, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	e := testkit.StartEcho(t, ec, testkit.TransferOptions{Seed: 2, Size: -1, Chunk: 8 << 10, Pace: time.Millisecond, Window: 64 << 10})
	e.WaitMore(t, 256<<10, 10*time.Second)
	e.Stop()
	if r := e.Wait(t, 10*time.Second); r.Sent == 0 || r.Received != r.Sent {
		t.Errorf("echo: %d sent, %d verified", r.Sent, r.Received)
	}
}

// corrupting flips one byte at offset at of what is written through it.
type corrupting struct {
	net.Conn
	off, at int64
}

func (c *corrupting) Write(b []byte) (int, error) {
	if c.off <= c.at && c.at < c.off+int64(len(b)) {
		b = append([]byte(nil), b...)
		b[c.at-c.off] ^= 0x40
	}
	c.off += int64(len(b))
	return c.Conn.Write(b)
}

func (c *corrupting) CloseWrite() error { return c.Conn.(*net.TCPConn).CloseWrite() }

func TestTransferFailures(t *testing.T) {
	t.Run("corrupt byte", func(t *testing.T) {
		c, s := loopback(t)
		r := &recorder{TB: t}
		msgs := r.run(func() {
			x := testkit.StartTransfer(r, &corrupting{Conn: c, at: 100003}, s, testkit.TransferOptions{Seed: 5, Size: 1 << 20})
			x.Wait(r, 30*time.Second)
		})
		if len(msgs) != 1 || !strings.Contains(msgs[0], "byte 100003:") {
			t.Errorf("got failures %q, want one naming byte 100003", msgs)
		}
	})
	t.Run("reset", func(t *testing.T) {
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		// An echo service that resets the connection after 64 KiB.
		testkit.ServeTCP(t, ln, func(c net.Conn) {
			_, _ = io.CopyN(c, c, 64<<10)
			_ = c.(*net.TCPConn).SetLinger(0)
		})
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		r := &recorder{TB: t}
		msgs := r.run(func() {
			x := testkit.StartEcho(r, c, testkit.TransferOptions{Seed: 6, Size: 1 << 20})
			x.Wait(r, 30*time.Second)
		})
		if len(msgs) != 1 || !strings.Contains(msgs[0], "connection reset") {
			t.Errorf("got failures %q, want one reporting the reset", msgs)
		}
	})
	t.Run("short", func(t *testing.T) {
		c, s := loopback(t)
		r := &recorder{TB: t}
		msgs := r.run(func() {
			x := testkit.StartTransfer(r, c, s, testkit.TransferOptions{Seed: 7, Size: 1 << 20})
			x.WaitReceived(r, 2<<20, 30*time.Second)
		})
		if len(msgs) != 1 || !strings.Contains(msgs[0], "ended after 1048576 bytes verified, before 2097152") {
			t.Errorf("got failures %q, want one saying it ended before", msgs)
		}
	})
}

func TestLeakChecks(t *testing.T) {
	b := testkit.TakeBaseline()
	stop := make(chan struct{})
	go func() { <-stop }()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	err = b.Leaks(100*time.Millisecond, 0, 0)
	if err == nil || !strings.Contains(err.Error(), "TestLeakChecks") || !strings.Contains(err.Error(), "pipe:") {
		t.Errorf("with a goroutine and a pipe left: got %v, want both reported", err)
	}
	close(stop)
	pr.Close()
	pw.Close()
	if err := b.Leaks(5*time.Second, 0, 0); err != nil {
		t.Errorf("after they went: %v", err)
	}
	testkit.NoGoroutines(t, time.Second, "testkit_test.TestLeakChecks.func")
}

// netPair is two gVisor stacks joined by one in-memory wire.
func netPair(t *testing.T) (a, b *gstack.Stack) {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	w := linkeptest.NewWire("tk0", "tk1", tcpip.LinkAddress("\x02\x00\x00\x00\x00\x01"), tcpip.LinkAddress("\x02\x00\x00\x00\x00\x02"),
		linkeptest.WireOptions{Logger: log})
	var stacks [2]*gstack.Stack
	for i, ep := range []gstack.LinkEndpoint{w.A, w.B} {
		s, err := ustack.NewNetstack()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.Close()
			s.Wait()
		})
		addrs := []netip.Prefix{netip.MustParsePrefix(fmt.Sprintf("10.77.0.%d/24", i+1)), netip.MustParsePrefix(fmt.Sprintf("fd77::%d/64", i+1))}
		if err := ustack.AddInterface(s, 1, fmt.Sprintf("tk%d", i), ep, addrs); err != nil {
			t.Fatal(err)
		}
		stacks[i] = s
	}
	return stacks[0], stacks[1]
}

func TestGonet(t *testing.T) {
	a, b := netPair(t)
	for _, dst := range []string{"10.77.0.2", "fd77::2"} {
		if err := testkit.Ping(a, netip.MustParseAddr(dst), 10*time.Second); err != nil {
			t.Errorf("ping %s: %v", dst, err)
		}
	}
	if err := testkit.Ping(a, netip.MustParseAddr("10.77.0.9"), 300*time.Millisecond); err == nil {
		t.Errorf("ping of an address nobody has: got nil, want an error")
	}
	testkit.ServeEcho(t, testkit.ListenTCP(t, b, netip.MustParseAddrPort("10.77.0.2:7")))
	testkit.CheckEcho(t, testkit.GonetDialer(a, netip.MustParseAddrPort("10.77.0.2:7")), testkit.Bytes(9, 1<<20))
	ln := testkit.ListenTCP(t, b, netip.MustParseAddrPort("[fd77::2]:9000"))
	c, s := testkit.Connect(t, ln, testkit.GonetDialer(a, netip.MustParseAddrPort("[fd77::2]:9000")))
	x := testkit.StartTransfer(t, c, s, testkit.TransferOptions{Seed: 10, Size: 16 << 20})
	x.Wait(t, time.Minute)
}
