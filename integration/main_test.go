package integration

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

func numGoroutine() int { return runtime.NumGoroutine() }

// Leak slack for the whole run: the runtime and the testing package may
// keep a few goroutines of their own (timers, the signal handler), and a
// test binary holds a few fds that come and go (the -test.v pipe, /proc).
const (
	runSlackGoroutines = 4
	runSlackFDs        = 3
)

// TestMain runs the tests and then fails the run if anything they made is
// left: namespaces or root-namespace interfaces named testPrefix*,
// goroutines beyond the starting count, or file descriptors.
func TestMain(m *testing.M) {
	baseG, baseFD := numGoroutine(), numFDs()
	code := m.Run()
	removeBuilt()
	if err := leakCheck(baseG, baseFD); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: leak check after the integration tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	} else {
		fmt.Printf("leak check: no namespaces, interfaces, goroutines or fds left (baseline %d goroutines, %d fds)\n", baseG, baseFD)
	}
	os.Exit(code)
}

func leakCheck(baseG, baseFD int) error {
	var problems []string
	left, err := leftovers()
	switch {
	case err != nil && os.Geteuid() == 0:
		problems = append(problems, fmt.Sprintf("listing namespaces and interfaces: %v", err))
	case len(left) > 0:
		problems = append(problems, "left behind: "+strings.Join(left, ", "))
	}
	g, fds, ok := settle(baseG, baseFD, runSlackGoroutines, runSlackFDs, 10*time.Second)
	if !ok {
		problems = append(problems, fmt.Sprintf("%d goroutines (started with %d) and %d fds (started with %d)\n%s\n%s",
			g, baseG, fds, baseFD, goroutineDump(), fdList()))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}

func goroutineDump() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
	return b.String()
}

// fdList names this process's open fds, for leak reports.
func fdList() string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	b.WriteString("open fds:")
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fmt.Fprintf(&b, " %s→%s", e.Name(), target)
	}
	return b.String()
}
