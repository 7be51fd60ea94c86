package appliance

import (
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

func TestShouldTrim(t *testing.T) {
	o := MemoryTrimOptions{IdleAlloc: 1 << 20, Excess: 2 << 20}
	prev := memSample{allocs: 100 << 20, heap: 6 << 20}
	for _, c := range []struct {
		name  string
		cur   memSample
		base  uint64
		want  bool
		about string
	}{
		{"idle after a burst", memSample{allocs: 100<<20 + 4096, heap: 14 << 20}, 6 << 20, true, "heap 8 MiB above the last trim"},
		{"busy", memSample{allocs: 108 << 20, heap: 14 << 20}, 6 << 20, false, "8 MiB allocated in the interval"},
		{"idle, little growth", memSample{allocs: 100<<20 + 4096, heap: 7 << 20}, 6 << 20, false, "1 MiB above"},
		{"idle, exactly the excess", memSample{allocs: 100 << 20, heap: 8 << 20}, 6 << 20, false, "not more than Excess"},
		{"idle, heap below base", memSample{allocs: 100 << 20, heap: 5 << 20}, 6 << 20, false, "it shrank"},
		{"first idle interval", memSample{allocs: 100<<20 + 512, heap: 6 << 20}, 0, true, "start's garbage"},
		{"metrics missing", memSample{}, 0, false, "all zero: never"},
	} {
		if got := shouldTrim(prev, c.cur, c.base, o); got != c.want {
			t.Errorf("%s (%s): got %v, want %v", c.name, c.about, got, c.want)
		}
	}
}

// heapHeld is the heap memory the process holds from the OS.
func heapHeld() uint64 {
	s := make([]metrics.Sample, len(trimMetrics))
	for i, n := range trimMetrics {
		s[i].Name = n
	}
	return readMemSample(s).heap
}

var sink [][]byte

// TestMemoryTrimmer: after a burst of 64 MiB, now garbage, the trimmer
// gives the heap back within a few intervals; Close stops it and may be
// called twice.
func TestMemoryTrimmer(t *testing.T) {
	runtime.GC()
	idle := heapHeld()
	for range 64 {
		sink = append(sink, make([]byte, 1<<20))
	}
	sink = nil
	burst := heapHeld()
	if burst < idle+32<<20 {
		t.Fatalf("heap %d bytes after the burst, %d before: want 32 MiB more", burst, idle)
	}
	m := StartMemoryTrimmer(MemoryTrimOptions{Interval: 20 * time.Millisecond})
	defer m.Close()
	deadline := time.Now().Add(5 * time.Second)
	for m.Trims() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if m.Trims() == 0 {
		t.Fatal("no trim within 5 s of a 64 MiB burst")
	}
	if now := heapHeld(); now > idle+16<<20 {
		t.Errorf("heap held %d bytes after the trim; %d before the burst, %d after: want the burst given back", now, idle, burst)
	}
	m.Close()
	m.Close()
	n := m.Trims()
	time.Sleep(50 * time.Millisecond)
	if m.Trims() != n {
		t.Errorf("trims went on after Close: %d, then %d", n, m.Trims())
	}
}
