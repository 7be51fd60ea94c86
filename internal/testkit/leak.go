package testkit

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// LeakGrace is how long the leak checks give goroutines and descriptors
// to go away.
const LeakGrace = 10 * time.Second

// goroutine is one goroutine of a runtime.Stack dump.
type goroutine struct {
	id    uint64
	stack string
}

// goroutines returns every goroutine's stack.
func goroutines() []goroutine {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []goroutine
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if id, ok := goroutineID(g); ok {
			out = append(out, goroutine{id, string(g)})
		}
	}
	return out
}

// goroutineID parses the "goroutine N [state]:" line that starts a stack.
func goroutineID(stack []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(stack, []byte("goroutine "))
	if !ok {
		return 0, false
	}
	num, _, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(string(num), 10, 64)
	return id, err == nil
}

// currentGoroutine is the calling goroutine's ID.
func currentGoroutine() uint64 {
	buf := make([]byte, 64)
	id, _ := goroutineID(buf[:runtime.Stack(buf, false)])
	return id
}

// listFDs lists this process's open descriptors as "N→target".
func listFDs() []string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(ents))
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the descriptor ReadDir itself used
		}
		out = append(out, e.Name()+"→"+target)
	}
	return out
}

// Counts returns how many goroutines run and file descriptors are open
// now, counted as Baseline counts them.
func Counts() (goroutines, fds int) { return runtime.NumGoroutine(), len(listFDs()) }

// Baseline is what the process had open at one moment: its goroutines
// (by ID: a goroutine started later is new even if an old one ended) and
// its file descriptors.
type Baseline struct {
	goroutines map[uint64]bool
	fds        map[string]bool
	// NumGoroutine and NumFD are the counts taken.
	NumGoroutine, NumFD int
}

// TakeBaseline records the goroutines and file descriptors open now.
func TakeBaseline() *Baseline {
	b := &Baseline{goroutines: map[uint64]bool{}, fds: map[string]bool{}}
	for _, g := range goroutines() {
		b.goroutines[g.id] = true
	}
	for _, f := range listFDs() {
		b.fds[f] = true
	}
	b.NumGoroutine, b.NumFD = len(b.goroutines), len(b.fds)
	return b
}

// newGoroutines returns the stacks of the goroutines started since b.
func (b *Baseline) newGoroutines() []string {
	var out []string
	for _, g := range goroutines() {
		if !b.goroutines[g.id] {
			out = append(out, g.stack)
		}
	}
	return out
}

// newFDs returns the descriptors opened since b: those whose number or
// file ("socket:[inode]", a path) was not open then.
func (b *Baseline) newFDs() []string {
	var fresh []string
	for _, f := range listFDs() {
		if !b.fds[f] {
			fresh = append(fresh, f)
		}
	}
	return fresh
}

// Leaks waits up to grace until at most slackGoroutines goroutines started
// since b still run and at most slackFDs descriptors opened since b are
// still open, and then returns nil; otherwise an error with the new
// goroutines' stacks and the new descriptors. Slack is for what the
// runtime and the testing package start once and keep (the signal handler,
// the network poller's descriptors); a negative slack leaves that kind
// unchecked.
func (b *Baseline) Leaks(grace time.Duration, slackGoroutines, slackFDs int) error {
	var gs, fs []string
	deadline := time.Now().Add(grace)
	for {
		gs, fs = nil, nil
		if slackGoroutines >= 0 {
			gs = b.newGoroutines()
		}
		if slackFDs >= 0 {
			fs = b.newFDs()
		}
		if len(gs) <= max(slackGoroutines, 0) && len(fs) <= max(slackFDs, 0) {
			return nil
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	var msg []string
	if len(gs) > max(slackGoroutines, 0) {
		msg = append(msg, fmt.Sprintf("%d goroutines started since the baseline (%d then) still run after %v, want at most %d:\n\n%s",
			len(gs), b.NumGoroutine, grace, slackGoroutines, strings.Join(gs, "\n\n")))
	}
	if len(fs) > max(slackFDs, 0) {
		msg = append(msg, fmt.Sprintf("%d file descriptors opened since the baseline (%d open then) still open after %v, want at most %d: %s",
			len(fs), b.NumFD, grace, slackFDs, strings.Join(fs, " ")))
	}
	return fmt.Errorf("%s", strings.Join(msg, "\n"))
}

// CheckGoroutines records the goroutines running now; when the test ends
// (t.Cleanup, so after the cleanups registered later) it fails the test if
// any goroutine started since is still running after LeakGrace, and
// prints their stacks.
func CheckGoroutines(t testing.TB) {
	t.Helper()
	b := TakeBaseline()
	t.Cleanup(func() {
		if err := b.Leaks(LeakGrace, 0, -1); err != nil {
			t.Error(err)
		}
	})
}

// CheckFDs records the file descriptors open now; when the test ends it
// fails the test if any opened since is still open after LeakGrace, and
// lists them. It first starts the runtime's network poller, whose
// descriptors stay open for the life of the process.
func CheckFDs(t testing.TB) {
	t.Helper()
	if ln, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
	}
	b := TakeBaseline()
	t.Cleanup(func() {
		if err := b.Leaks(LeakGrace, -1, 0); err != nil {
			t.Error(err)
		}
	})
}

// NoGoroutines fails the test if, after timeout, goroutines other than
// the caller's still run code whose stack mentions any of substrs; it
// prints their stacks.
func NoGoroutines(t testing.TB, timeout time.Duration, substrs ...string) {
	t.Helper()
	self := currentGoroutine()
	var left []string
	for deadline := time.Now().Add(timeout); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		for _, g := range goroutines() {
			if g.id != self && slices.ContainsFunc(substrs, func(s string) bool { return strings.Contains(g.stack, s) }) {
				left = append(left, g.stack)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			break
		}
	}
	t.Errorf("goroutines still running after %v (mentioning %q):\n\n%s", timeout, substrs, strings.Join(left, "\n\n"))
}
