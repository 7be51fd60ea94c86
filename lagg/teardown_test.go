package lagg_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// TestTeardownUnderLoad: Stack.Close and Stack.Wait return while frames are
// still arriving. Stack.Wait detaches the lagg (Attach(nil), then Wait) with
// the stack's lock held while a port's receive goroutine may be inside the
// stack waiting for that lock, so neither may wait for that goroutine.
func TestTeardownUnderLoad(t *testing.T) {
	for i := range 3 {
		p := newPair(t, "failover", 2, nil)
		x := startTransfer(t, p.a, p.b, 9000, 1<<30)
		x.WaitReceived(t, 4<<20, time.Minute)
		done := make(chan struct{})
		go func() {
			// B goes first: A keeps sending, so B's receive goroutine meets
			// closed endpoints and answers with resets through the stack.
			p.a.stopAnnouncing()
			p.b.stopAnnouncing()
			p.b.s.Close()
			p.b.s.Wait()
			p.a.s.Close()
			p.a.s.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			p.a.wedged.Store(true)
			p.b.wedged.Store(true)
			buf := make([]byte, 1<<20)
			t.Fatalf("round %d: stack teardown under load still blocked after 30s\n%s", i, buf[:runtime.Stack(buf, true)])
		}
	}
}

// TestGoroutinesBackToBaseline: after adding and removing ports, flapping
// links, a Gone event and a protocol switch, closing the stacks and laggs
// leaves no goroutine behind.
func TestGoroutinesBackToBaseline(t *testing.T) {
	testkit.CheckGoroutines(t)
	t.Run("work", func(t *testing.T) {
		p, gone := goneWires(t)
		testkit.ServeEcho(t, p.b.listen(t, 7))
		testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte("hello"))
		for range 5 {
			p.wires[1].SetLinkUp(false)
			p.wires[1].SetLinkUp(true)
		}
		p.a.l.Update(func(c *lagg.Config) { c.UpDelay, c.DownDelay = 50*time.Millisecond, 50*time.Millisecond }) // leaves timers pending
		p.wires[1].SetLinkUp(false)
		p.wires[1].SetLinkUp(true)
		p.wires[1].SetLinkUp(false)
		extra := p.addBoth(t, 10)
		testkit.CheckEcho(t, p.a.dialer(p.b, 7), []byte("on the added port"))
		p.removeBoth(t, extra)
		if err := p.a.l.Update(func(c *lagg.Config) { c.Proto = lagg.Proto("loadbalance") }); err != nil {
			t.Fatal(err)
		}
		p.wires[0].SetPassing(false)
		gone.gone()
		testkit.WaitFor(t, 10*time.Second, "the gone port to be released", func() bool { return !gone.IsAttached() })
	})
	// CheckGoroutines's cleanup checks now, once the subtest's cleanups
	// have stopped all it started.
}
