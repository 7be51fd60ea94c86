package testkit

import (
	"sync"
	"time"

	"github.com/ulagg/ulagg/lagg"
)

// FakeClock is a lagg.Clock (and a dhcp.Clock: both are internal/clock's)
// whose time moves only when Advance moves it.
//
// Advance runs the callbacks that fall due synchronously, on the calling
// goroutine, one at a time in deadline order (ties in the order they were
// armed), with Now reporting each callback's deadline while it runs. The
// clock's lock is not held while a callback runs, so callbacks may call
// Now, AfterFunc and Stop. This suits the lagg: its protocol timer callback
// only makes a non-blocking channel send to its control goroutine, and its
// up/down delay callbacks take the lagg's mutex, which the test calling
// Advance does not hold. A callback must not call Advance itself.
//
// Like time.AfterFunc, AfterFunc with d <= 0 runs f at once on its own
// goroutine: the lagg arms such a timer while holding its mutex.
type FakeClock struct {
	// advanceMu serialises Advance calls, so callbacks never overlap.
	advanceMu sync.Mutex

	mu sync.Mutex
	// +checklocks:mu
	now time.Time
	// +checklocks:mu
	pending []*fakeTimer
	// +checklocks:mu
	seq uint64
}

var _ lagg.Clock = (*FakeClock)(nil)

// fakeTimer is one AfterFunc call. Its fields are immutable; whether it is
// pending is whether the clock's pending list holds it.
type fakeTimer struct {
	c    *FakeClock
	when time.Time
	seq  uint64
	f    func()
}

// NewFakeClock returns a clock reading start.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now implements lagg.Clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc implements lagg.Clock: f runs when Advance reaches now+d.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) lagg.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{c: c, when: c.now.Add(d), seq: c.seq, f: f}
	if d <= 0 {
		go f()
		return t
	}
	c.pending = append(c.pending, t)
	return t
}

// Stop implements lagg.Timer.
func (t *fakeTimer) Stop() bool {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.removeLocked(t)
}

// removeLocked takes t off the pending list and reports whether it was on.
//
// +checklocks:c.mu
func (c *FakeClock) removeLocked(t *fakeTimer) bool {
	for i, p := range c.pending {
		if p == t {
			c.pending = append(c.pending[:i], c.pending[i+1:]...)
			return true
		}
	}
	return false
}

// Advance moves the clock forward by d, running every callback due by then
// as the type's documentation describes. Callbacks armed by callbacks run
// too if they fall due within d.
func (c *FakeClock) Advance(d time.Duration) {
	c.advanceMu.Lock()
	defer c.advanceMu.Unlock()
	c.mu.Lock()
	target := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *fakeTimer
		for _, t := range c.pending {
			if t.when.After(target) {
				continue
			}
			if next == nil || t.when.Before(next.when) || t.when.Equal(next.when) && t.seq < next.seq {
				next = t
			}
		}
		if next == nil {
			c.now = target
			c.mu.Unlock()
			return
		}
		c.removeLocked(next)
		if next.when.After(c.now) {
			c.now = next.when
		}
		c.mu.Unlock()
		next.f()
	}
}

// Pending returns how many AfterFunc calls wait for their time.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// NextDeadline returns the earliest pending deadline; ok is false when
// nothing is pending.
func (c *FakeClock) NextDeadline() (t time.Time, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pending {
		if !ok || p.when.Before(t) {
			t, ok = p.when, true
		}
	}
	return t, ok
}
