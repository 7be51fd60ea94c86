package host_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ulagg/ulagg/linkep/host"
)

// TestWatchAppear follows an interface by name through creation, deletion,
// re-creation and a move to another namespace and back; an interface that
// exists already is announced at once, and missing-interface errors are
// recognised.
func TestWatchAppear(t *testing.T) {
	htLeakCheck(t)
	htRequireRoot(t)
	id := htID(t)
	n := htNewNet(t, "ulgt-"+id+"-a")
	other := htNewNet(t, "ulgt-"+id+"-b")
	const name = "ulgtap0"

	if _, err := host.OpenAFPacket(name, host.AFPacketOptions{Netns: n.name}); err == nil || !host.IsMissing(err) {
		t.Fatalf("open of a missing interface: got %v, want an error IsMissing recognises", err)
	}
	if host.IsMissing(fmt.Errorf("something else")) {
		t.Error("IsMissing of an unrelated error: got true")
	}

	var calls atomic.Int32
	cancel, err := host.WatchAppear(n.name, name, func() { calls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	// Nothing is announced for a name that does not exist, nor for others.
	add := func(nn *htNet, dev string) {
		t.Helper()
		if err := nn.nl.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: dev}, PeerName: dev + "x"}); err != nil {
			t.Fatal(err)
		}
	}
	add(n, "ulgtap9")
	time.Sleep(100 * time.Millisecond)
	if got := calls.Load(); got != 0 {
		t.Fatalf("announced %d times before %s existed", got, name)
	}
	waitCalls := func(what string, before int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for calls.Load() == before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not announced within 5s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	c := calls.Load()
	add(n, name)
	waitCalls("created", c)
	if err := n.nl.LinkDel(n.link(t, name)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	c = calls.Load()
	add(n, name)
	waitCalls("re-created", c)

	// Moved away and back.
	if err := n.nl.LinkSetNsFd(n.link(t, name), int(other.h)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	start := calls.Load()
	if err := other.nl.LinkSetNsFd(other.link(t, name), int(n.h)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for calls.Load() == start && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if calls.Load() == start {
		t.Fatal("moved back: not announced within 5s")
	}

	// A second watch of a name that exists is told at once.
	var now atomic.Int32
	cancel2, err := host.WatchAppear(n.name, name, func() { now.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for now.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	cancel2()
	cancel2() // idempotent
	if now.Load() == 0 {
		t.Error("an existing interface was not announced at once")
	}
	cancel()
	after := calls.Load()
	if err := n.nl.LinkDel(n.link(t, name)); err != nil {
		t.Fatal(err)
	}
	add(n, name)
	time.Sleep(100 * time.Millisecond)
	if got := calls.Load(); got != after {
		t.Errorf("announced after cancel: %d calls, had %d", got, after)
	}
}
