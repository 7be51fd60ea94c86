package testkit

import (
	"testing"
	"time"
)

// pollInterval is how often WaitFor and Poll test their condition: every
// millisecond for the first fastPolls (so that what a test measures with
// WaitFor's result is precise), then every 5 ms (so that a long wait on a
// condition that takes a lock does not starve what it waits for).
const (
	pollFast  = time.Millisecond
	pollSlow  = 5 * time.Millisecond
	fastPolls = 200 * time.Millisecond
)

// Poll tests cond until it holds or timeout passes, and reports whether
// it held.
func Poll(timeout time.Duration, cond func() bool) bool {
	start := time.Now()
	for !cond() {
		since := time.Since(start)
		if since > timeout {
			return false
		}
		if since < fastPolls {
			time.Sleep(pollFast)
		} else {
			time.Sleep(pollSlow)
		}
	}
	return true
}

// WaitFor tests cond until it holds, failing the test after timeout with
// "timed out after TIMEOUT waiting for WHAT". It returns how long cond took
// to hold.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
	return time.Since(start)
}
