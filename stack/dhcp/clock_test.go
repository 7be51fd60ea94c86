package dhcp_test

import (
	"sync"
	"testing"
	"time"

	"github.com/ulagg/ulagg/stack/dhcp"
)

// fakeClock is a dhcp.Clock that moves only when Advance says. It is local
// (not internal/testkit's) so that these tests need nothing but the stack.
type fakeClock struct {
	mu sync.Mutex
	// +checklocks:mu
	now time.Time
	// +checklocks:mu
	pending []*fakeTimer
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	f    func()
}

func newFakeClock(start time.Time) *fakeClock { return &fakeClock{now: start} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) dhcp.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), f: f}
	if d <= 0 {
		go f()
		return t
	}
	c.pending = append(c.pending, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, p := range t.c.pending {
		if p == t {
			t.c.pending = append(t.c.pending[:i], t.c.pending[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock by d and runs, in order, the callbacks due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	target := c.now.Add(d)
	for {
		var next *fakeTimer
		idx := -1
		for i, t := range c.pending {
			if !t.when.After(target) && (next == nil || t.when.Before(next.when)) {
				next, idx = t, i
			}
		}
		if next == nil {
			break
		}
		c.pending = append(c.pending[:idx], c.pending[idx+1:]...)
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
		c.mu.Lock()
	}
	c.now = target
	c.mu.Unlock()
}

// waitFor polls cond for up to timeout and fails the test if it stays false.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
