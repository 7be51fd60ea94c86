package integration

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/internal/testkit"
)

// Leak slack for the whole run: the runtime and the testing package may
// keep a few goroutines of their own (timers, the signal handler), and a
// test binary holds a few fds that come and go (the -test.v pipe, /proc,
// the network poller's).
const (
	runSlackGoroutines = 4
	runSlackFDs        = 3
)

// TestMain runs the tests and then fails the run if anything they made is
// left: namespaces or root-namespace interfaces named testPrefix*,
// goroutines started since the start, or file descriptors.
func TestMain(m *testing.M) {
	base := testkit.TakeBaseline()
	code := m.Run()
	removeBuilt()
	if err := leakCheck(base); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: leak check after the integration tests: %v\n", err)
		if code == 0 {
			code = 1
		}
	} else {
		fmt.Printf("leak check: no namespaces, interfaces, goroutines or fds left (baseline %d goroutines, %d fds)\n", base.NumGoroutine, base.NumFD)
	}
	os.Exit(code)
}

func leakCheck(base *testkit.Baseline) error {
	var problems []string
	left, err := leftovers()
	switch {
	case err != nil && os.Geteuid() == 0:
		problems = append(problems, fmt.Sprintf("listing namespaces and interfaces: %v", err))
	case len(left) > 0:
		problems = append(problems, "left behind: "+strings.Join(left, ", "))
	}
	if err := base.Leaks(testkit.LeakGrace, runSlackGoroutines, runSlackFDs); err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return nil
}
