package appliance

import (
	"net/netip"
	"testing"
	"time"
)

// TestReplyLimiter: a source gets its burst then rate a second; a flood
// from ever new (spoofed) sources keeps the table at its bound and gets no
// more than the overflow bucket's rate between them.
func TestReplyLimiter(t *testing.T) {
	now := time.Unix(1000, 0)
	l := newReplyLimiter(10, 100)
	a := netip.MustParseAddr("192.0.2.1")
	n := 0
	for range 50 {
		if l.allow(a, now) {
			n++
		}
	}
	if n != 10 {
		t.Fatalf("a burst of 50: %d allowed, want 10", n)
	}
	if l.allow(a, now.Add(50*time.Millisecond)) {
		t.Fatal("allowed before a token came back")
	}
	if !l.allow(a, now.Add(150*time.Millisecond)) {
		t.Fatal("not allowed after a token came back")
	}

	// 100,000 sources, 1,000 a millisecond.
	allowed := 0
	for i := range 100000 {
		src := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if l.allow(src, now.Add(time.Duration(i)*time.Microsecond)) {
			allowed++
		}
		if l.sources() > 100 {
			t.Fatalf("the table holds %d sources, more than its 100", l.sources())
		}
	}
	// The first 99 new sources found room (10 each at most), then the
	// overflow bucket: 10 at once and 10 a second for 0.1 s.
	if allowed > 99*10+10+2 {
		t.Errorf("%d replies to a spoofed flood, want at most %d", allowed, 99*10+12)
	}
	// Once the flood is over, sweeping frees the table for newcomers.
	later := now.Add(10 * time.Second)
	if !l.allow(netip.MustParseAddr("198.51.100.7"), later) {
		t.Error("a new source after the flood was refused")
	}
	if l.sources() > 2 {
		t.Errorf("after the sweep the table holds %d sources", l.sources())
	}
}

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":              "192.0.2.1",
		"::ffff:192.0.2.1":       "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":   "2001:db8:1:2::",
		"2001:db8:1:2:ffff::abc": "2001:db8:1:2::",
		"fe80::1":                "fe80::",
	} {
		if got := sourceKey(netip.MustParseAddr(in)); got.String() != want {
			t.Errorf("sourceKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestReservedSourcePort(t *testing.T) {
	for _, p := range []int{0, 7, 9, 13, 17, 19, 37, 53, 123, 1023} {
		if !reservedSourcePort(p) {
			t.Errorf("port %d is answered", p)
		}
	}
	for _, p := range []int{1024, 32768, 40007, 60999, 65535} {
		if reservedSourcePort(p) {
			t.Errorf("port %d is not answered", p)
		}
	}
}
