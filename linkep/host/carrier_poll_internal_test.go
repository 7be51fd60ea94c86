package host

import (
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// loHostLink is a hostLink on lo in the calling thread's namespace, enough
// for the poller (no claim, no watch); it needs no privilege.
func loHostLink(t testing.TB) *hostLink {
	t.Helper()
	ns, err := openNetNS("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.close)
	idx, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, idx); err != nil {
		t.Fatal(err)
	}
	return &hostLink{name: "lo", ns: ns, index: int(idx.Uint32()), log: slog.New(slog.DiscardHandler)}
}

// TestCarrierPollOnceAllocs: a poll round allocates nothing, and a round
// with no change reports none.
func TestCarrierPollOnceAllocs(t *testing.T) {
	h := loHostLink(t)
	if err := registerCarrier(h, time.Hour); err != nil { // the ticker never fires
		t.Fatal(err)
	}
	defer h.stopCarrierPoll()
	buf := make([]carrierChange, 0, 4)
	first := pollCarrierOnce(buf[:0])
	if len(first) != 1 || first[0].h != h || !first[0].up {
		t.Fatalf("first round: got %+v, want lo up once", first)
	}
	if again := pollCarrierOnce(buf[:0]); len(again) != 0 {
		t.Fatalf("second round: got %d changes, want 0", len(again))
	}
	if n := testing.AllocsPerRun(100, func() { buf = pollCarrierOnce(buf[:0]) }); n != 0 {
		t.Errorf("pollCarrierOnce: %v allocs, want 0", n)
	}
}

// TestCarrierPollInterval: the poller runs at the smallest interval
// registered, slows down when that port leaves and stops with the last.
func TestCarrierPollInterval(t *testing.T) {
	a, b := loHostLink(t), loHostLink(t)
	if err := registerCarrier(a, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := registerCarrier(b, 2*time.Millisecond); err != nil {
		a.stopCarrierPoll()
		t.Fatal(err)
	}
	if err := registerCarrier(b, 2*time.Millisecond); err == nil {
		t.Error("registering a port twice: no error")
	}
	rounds := func(d time.Duration) uint64 {
		carrierPoller.mu.Lock()
		n0 := carrierPoller.polls
		carrierPoller.mu.Unlock()
		time.Sleep(d)
		carrierPoller.mu.Lock()
		defer carrierPoller.mu.Unlock()
		return carrierPoller.polls - n0
	}
	if n := rounds(200 * time.Millisecond); n < 25 {
		t.Errorf("at 2ms: %d rounds in 200ms, want ≥ 25", n)
	}
	b.stopCarrierPoll()
	time.Sleep(10 * time.Millisecond) // let the kick land
	if n := rounds(200 * time.Millisecond); n > 8 {
		t.Errorf("at 50ms: %d rounds in 200ms, want ≤ 8", n)
	}
	a.stopCarrierPoll()
	a.stopCarrierPoll() // idempotent
	carrierPoller.mu.Lock()
	defer carrierPoller.mu.Unlock()
	if carrierPoller.stop != nil || len(carrierPoller.ns) != 0 || len(carrierPoller.watches) != 0 {
		t.Errorf("after the last port: running %v, %d sockets, %d watches", carrierPoller.stop != nil, len(carrierPoller.ns), len(carrierPoller.watches))
	}
}

// BenchmarkCarrierRead compares the ways to read a carrier: ETHTOOL_GLINK
// (what the poller uses), SIOCGIFFLAGS (cheap but truncated to 16 bits: no
// IFF_LOWER_UP) and sysfs.
func BenchmarkCarrierRead(b *testing.B) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Close(fd)
	b.Run("ETHTOOL_GLINK", func(b *testing.B) {
		e := newEthtoolIfreq("lo")
		for b.Loop() {
			if _, err := readCarrier(fd, e); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("SIOCGIFFLAGS", func(b *testing.B) {
		ifr, _ := unix.NewIfreq("lo")
		for b.Loop() {
			if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("sysfs", func(b *testing.B) {
		for b.Loop() {
			if _, err := os.ReadFile("/sys/class/net/lo/carrier"); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// TestLinkIsUpFlags: rtnetlink's link state is IFF_UP|IFF_LOWER_UP, as the
// poller's ETHTOOL_GLINK; IFF_RUNNING comes up to a second later and must
// not hold the port down meanwhile (or flip it down after the poller saw it
// up).
func TestLinkIsUpFlags(t *testing.T) {
	for _, tc := range []struct {
		flags uint32
		want  bool
	}{
		{unix.IFF_UP | unix.IFF_LOWER_UP, true},
		{unix.IFF_UP | unix.IFF_LOWER_UP | unix.IFF_RUNNING, true},
		{unix.IFF_UP | unix.IFF_RUNNING, false},
		{unix.IFF_LOWER_UP | unix.IFF_RUNNING, false},
		{unix.IFF_UP, false},
	} {
		if got := linkIsUp(&netlink.LinkAttrs{RawFlags: tc.flags}); got != tc.want {
			t.Errorf("flags %#x: up %v, want %v", tc.flags, got, tc.want)
		}
	}
}
