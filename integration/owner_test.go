package integration

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ulagg/ulagg/internal/lab"
)

// mtuWatch counts MTU changes of the interfaces in a namespace, from its
// rtnetlink notifications.
type mtuWatch struct {
	changes atomic.Int64
	done    chan struct{}
	wg      sync.WaitGroup
}

func watchMTU(t *testing.T, ns string) *mtuWatch {
	t.Helper()
	h, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	w := &mtuWatch{done: make(chan struct{})}
	ch := make(chan netlink.LinkUpdate, 4096)
	if err := netlink.LinkSubscribeWithOptions(ch, w.done, netlink.LinkSubscribeOptions{Namespace: &h, ListExisting: true, ReceiveBufferSize: 4 << 20, ReceiveBufferForceSize: true}); err != nil {
		t.Fatal(err)
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		last := map[int32]uint32{}
		for u := range ch {
			idx, mtu := u.Index, u.Attrs().MTU
			if old, ok := last[idx]; ok && old != uint32(mtu) {
				w.changes.Add(1)
			}
			last[idx] = uint32(mtu)
		}
	}()
	t.Cleanup(w.stop)
	return w
}

// stop ends the subscription (idempotent).
func (w *mtuWatch) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}

// TestOwnerSecondProcess: a second `ulagg run` on the interfaces a first
// one holds, with another MTU, another control socket and another runtime
// directory, is refused at start with an error naming the first one's pid,
// and changes nothing: no MTU fight (the first logs no revert), the first
// keeps serving, and its clean stop restores the interfaces.
func TestOwnerSecondProcess(t *testing.T) {
	tp, orig := newJumboTopo(t)
	_, file1 := crWrite(t, func(dir string) string { return crConfig(dir, jumboMTU, tp.ports...) })
	p1 := crStart(t, tp.lag, file1)
	crWaitServing(t, tp, p1)
	crWaitPorts(t, tp, jumboMTU)

	_, file2 := crWrite(t, func(dir string) string { return crConfig(dir, 4000, tp.ports...) })
	mw := watchMTU(t, tp.lag)
	start := time.Now()
	p2 := crStart(t, tp.lag, file2)
	code, exited := p2.waitExit(t, 5*time.Second)
	if !exited {
		// What happens without an owner per interface: both run and
		// fight over the MTU. Count it, then fail.
		n := mw.changes.Load()
		lines := bytes.Count(p1.out.Bytes(), []byte("\n")) + bytes.Count(p2.out.Bytes(), []byte("\n"))
		t.Fatalf("the second ulagg still runs after 5s: %d port MTU changes meanwhile (%.0f/s), %d log lines from both", n, float64(n)/time.Since(start).Seconds(), lines)
	}
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // notifications of anything it did
	mw.stop()
	if n := mw.changes.Load(); n != 0 {
		t.Errorf("the port MTUs changed %d times while the second ulagg started and was refused, want 0", n)
	}
	out := p2.out.String()
	t.Logf("measure: second ulagg refused in %v, exit %d: %s", took.Round(time.Millisecond), code, strings.TrimSpace(ifcTail(out, 400)))
	if code == 0 {
		t.Errorf("the second ulagg exited 0, want an error")
	}
	if want := fmt.Sprintf("in use by pid %d", p1.pid()); !strings.Contains(out, want) || !strings.Contains(out, tp.ports[0]) {
		t.Errorf("the second ulagg's error does not name the port and say %q:\n%s", want, out)
	}
	for _, p := range tp.ports {
		if li, err := lab.Link(tp.lag, p); err != nil || li.MTU != jumboMTU || !li.AdminUp {
			t.Errorf("%s after the refused start: %+v %v; want the first ulagg's MTU 9000, up", p, li, err)
		}
	}
	if n := bytes.Count(p1.out.Bytes(), []byte("restoring it")); n != 0 {
		t.Errorf("the first ulagg reverted %d MTU changes: the second one touched the ports", n)
	}
	echoOK(t, tp.host, 1<<20)
	p1.term(t, time.Second)
	checkRestored(t, tp, orig)
}
