package appliance

import (
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// Memory given back to the operating system once the appliance is idle
// again (issue #12). A burst of traffic leaves the process holding what it
// needed at the peak: garbage no collection has freed yet (the heap is not
// growing, so none starts), gVisor's buffer pools (sync.Pool, dropped only
// after two collections) and free heap pages the runtime keeps as long as
// the heap goal of the busy time stands. Go's background scavenger keeps
// what that goal allows, and the runtime forces a collection only every
// two minutes: after 1 GB, ulagg held 8 MB more for minutes.
//
// The trimmer looks every Interval at runtime/metrics counters (no
// stop-the-world, unlike runtime.ReadMemStats): when the last interval
// allocated little (idle) and the heap grew by more than Excess since the
// last trim (or since it was smallest), it collects twice and returns the
// free pages (debug.FreeOSMemory). The first idle interval
// after start trims too: what starting allocated is garbage by then.
// While traffic flows it does nothing, so it costs no throughput. (The
// live heap of the last collection is no guide: after a burst it is the
// busy time's, in-flight buffers included, until a collection runs.)

// MemoryTrimOptions tune a MemoryTrimmer; zero values take the defaults.
type MemoryTrimOptions struct {
	// Interval is how often the trimmer looks (default 2 s).
	Interval time.Duration
	// IdleAlloc: an interval that allocated less is idle (default 1 MiB;
	// an idle appliance with 8 ports allocates a few KiB a second).
	IdleAlloc uint64
	// Excess is how much the heap must have grown since the last trim to
	// be worth another (default 2 MiB; a trim costs two collections, a
	// few ms of CPU with the appliance's heap of a few MB).
	Excess uint64
	// Logger, if set, gets one debug line per trim.
	Logger *slog.Logger
}

// Defaults of MemoryTrimOptions.
const (
	DefaultTrimInterval  = 2 * time.Second
	DefaultTrimIdleAlloc = 1 << 20
	DefaultTrimExcess    = 2 << 20
)

// MemoryTrimmer gives memory back to the operating system after a burst;
// see StartMemoryTrimmer.
type MemoryTrimmer struct {
	o     MemoryTrimOptions
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	trims atomic.Uint64
}

// memSample is what the trimmer reads each interval, in bytes.
type memSample struct {
	allocs uint64 // allocated since the process started
	heap   uint64 // heap memory the process holds from the OS (not released)
	live   uint64 // live heap marked by the last collection: logged only
}

// Runtime metrics the trimmer reads; memSample's fields are their sum.
var trimMetrics = [...]string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/gc/heap/live:bytes",
}

// StartMemoryTrimmer starts the trimmer's goroutine; Close stops it.
func StartMemoryTrimmer(o MemoryTrimOptions) *MemoryTrimmer {
	if o.Interval <= 0 {
		o.Interval = DefaultTrimInterval
	}
	if o.IdleAlloc == 0 {
		o.IdleAlloc = DefaultTrimIdleAlloc
	}
	if o.Excess == 0 {
		o.Excess = DefaultTrimExcess
	}
	m := &MemoryTrimmer{o: o, stop: make(chan struct{}), done: make(chan struct{})}
	go m.routineTrim()
	return m
}

// Close stops the trimmer and waits for it. It is idempotent.
func (m *MemoryTrimmer) Close() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// Trims is how many times the trimmer gave memory back.
func (m *MemoryTrimmer) Trims() uint64 { return m.trims.Load() }

func (m *MemoryTrimmer) routineTrim() {
	defer close(m.done)
	samples := make([]metrics.Sample, len(trimMetrics))
	for i, name := range trimMetrics {
		samples[i].Name = name
	}
	t := time.NewTicker(m.o.Interval)
	defer t.Stop()
	prev := readMemSample(samples)
	var base uint64 // the heap after the last trim, or its smallest since
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		cur := readMemSample(samples)
		base = min(base, cur.heap)
		if shouldTrim(prev, cur, base, m.o) {
			start := time.Now()
			trimMemory()
			m.trims.Add(1)
			after := readMemSample(samples)
			if m.o.Logger != nil {
				m.o.Logger.Debug("memory given back", "heap_before", cur.heap, "heap_after", after.heap,
					"live", after.live, "took", time.Since(start).Round(time.Microsecond))
			}
			cur, base = after, after.heap
		}
		prev = cur
	}
}

// readMemSample reads the trimmer's metrics into a memSample.
func readMemSample(samples []metrics.Sample) memSample {
	metrics.Read(samples)
	v := func(i int) uint64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0 // a metric this Go does not have (no heap: no trim)
		}
		return samples[i].Value.Uint64()
	}
	return memSample{allocs: v(0), heap: v(1) + v(2) + v(3), live: v(4)}
}

// shouldTrim: the interval from prev to cur allocated less than
// o.IdleAlloc, and the heap is more than o.Excess above base.
func shouldTrim(prev, cur memSample, base uint64, o MemoryTrimOptions) bool {
	return cur.allocs-prev.allocs < o.IdleAlloc && cur.heap > base && cur.heap-base > o.Excess
}

// trimMemory gives back what the process holds and does not use now: two
// collections (the first moves sync.Pool contents, gVisor's buffer pools
// among them, to the victim caches, the second frees them) and every free
// heap page. It costs two collections: call it when idle.
func trimMemory() {
	debug.FreeOSMemory()
	debug.FreeOSMemory()
}
