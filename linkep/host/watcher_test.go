package host_test

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ulagg/ulagg/linkep/host"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TestWatchLink checks fan-out by ifindex, and that watches can be added and
// cancelled from inside a callback without deadlock; the leak check verifies
// that the subscription goroutine ends with the last watch.
func TestWatchLink(t *testing.T) {
	htLeakCheck(t)
	htRequireRoot(t)
	n := htNewNet(t, "ulgt-"+htID(t)+"-w")
	var idx [3]int
	for i := range idx {
		d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ulgtw" + string(rune('0'+i))}, PeerName: "ulgtw" + string(rune('0'+i)) + "x"}
		if err := n.nl.LinkAdd(d); err != nil {
			t.Fatal(err)
		}
		idx[i] = n.link(t, d.Name).Attrs().Index
	}
	setUp := func(i int) {
		t.Helper()
		l, err := n.nl.LinkByIndex(idx[i])
		if err != nil {
			t.Fatal(err)
		}
		if err := n.nl.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}

	var calls [3]atomic.Int32
	var mu sync.Mutex
	var cancel1, cancel2 func()
	cancel0, err := host.WatchLink(n.h, idx[0], func(u netlink.LinkUpdate) {
		if u.Link.Attrs().Index != idx[0] {
			t.Errorf("watch 0 got ifindex %d", u.Link.Attrs().Index)
		}
		calls[0].Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cancel0()
	mu.Lock() // the callback may run before cancel1 is assigned
	cancel1, err = host.WatchLink(n.h, idx[1], func(u netlink.LinkUpdate) {
		if u.Header.Type != unix.RTM_NEWLINK {
			return
		}
		calls[1].Add(1)
		// Re-entrancy: cancel ourselves and watch another interface.
		mu.Lock()
		defer mu.Unlock()
		cancel1()
		if cancel2 == nil {
			var err error
			cancel2, err = host.WatchLink(n.h, idx[2], func(netlink.LinkUpdate) { calls[2].Add(1) })
			if err != nil {
				t.Error(err)
			}
		}
	})
	mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	setUp(0)
	htEventually(t, "watch 0 called", func() bool { return calls[0].Load() > 0 })
	if calls[1].Load() != 0 {
		t.Error("watch 1 called for another interface")
	}
	setUp(1)
	htEventually(t, "watch 1 called", func() bool { return calls[1].Load() > 0 })
	setUp(2)
	htEventually(t, "watch 2 (added in a callback) called", func() bool { return calls[2].Load() > 0 })
	if err := n.nl.LinkSetDown(n.link(t, "ulgtw1")); err != nil {
		t.Fatal(err)
	}
	before := calls[0].Load()
	if err := n.nl.LinkSetDown(n.link(t, "ulgtw0")); err != nil {
		t.Fatal(err)
	}
	htEventually(t, "watch 0 called again", func() bool { return calls[0].Load() > before })
	if got := calls[1].Load(); got != 1 {
		t.Errorf("watch 1 called %d times, want 1 (it cancelled itself)", got)
	}
	mu.Lock()
	c2 := cancel2
	mu.Unlock()
	c2()
	cancel0()
	cancel0() // idempotent
}
