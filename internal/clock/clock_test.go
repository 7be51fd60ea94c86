package clock_test

import (
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/clock"
)

// TestReal: the real clock's AfterFunc fires once its time has passed, and
// Stop cancels a call that has not run (reporting true) and reports false
// for one that has.
func TestReal(t *testing.T) {
	var c clock.Clock = clock.Real{}
	start := c.Now()
	fired := make(chan time.Time, 1)
	tm := c.AfterFunc(10*time.Millisecond, func() { fired <- time.Now() })
	select {
	case at := <-fired:
		if d := at.Sub(start); d < 10*time.Millisecond {
			t.Errorf("fired after %v, want at least 10ms", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("AfterFunc did not fire within 5s")
	}
	if tm.Stop() {
		t.Error("Stop after the call ran reported true")
	}
	late := c.AfterFunc(time.Hour, func() { t.Error("a stopped call ran") })
	if !late.Stop() {
		t.Error("Stop of a pending call reported false")
	}
}
