// Package clock is the time source the lagg and the DHCP client share, so
// that one fake clock (internal/testkit) drives the tests of both. It
// imports nothing but the standard library: package stack/dhcp stays
// embeddable.
package clock

import "time"

// Clock is a time source: protocol timers, delays, lease times. Tests
// pass a fake one.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f on its own goroutine once d has passed.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop cancels the call; it reports false if the call already ran.
	Stop() bool
}

// Real is the system clock.
type Real struct{}

// Now returns time.Now().
func (Real) Now() time.Time { return time.Now() }

// AfterFunc is time.AfterFunc.
func (Real) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }
