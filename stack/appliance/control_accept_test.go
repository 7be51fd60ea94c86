package appliance

import (
	"bufio"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
)

// acceptLog collects a server's log lines.
type acceptLog struct{ testkit.SyncBuffer }

func (l *acceptLog) lines(s string) int { return strings.Count(l.String(), s) }

// startAcceptServer runs a control server for an empty appliance, with
// accept replaced when given.
func startAcceptServer(t *testing.T, accept func(*net.UnixListener) (*net.UnixConn, error)) (*ControlServer, *acceptLog) {
	t.Helper()
	a, err := New(config.Default(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	log := &acceptLog{}
	s, err := ListenControl(a, ControlOptions{
		Path:   filepath.Join(t.TempDir(), "ulagg.sock"),
		Logger: slog.New(slog.NewTextHandler(log, nil)),
		accept: accept,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, log
}

// statusOK asks for status and fails unless it is served within 10 s.
func statusOK(t *testing.T, path string) {
	t.Helper()
	type result struct {
		resp *ControlResponse
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := ControlCall(path, ControlRequest{Cmd: CmdStatus, Names: true})
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || !r.resp.OK {
			t.Fatalf("status: %+v, %v", r.resp, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("status not served within 10s: the control socket no longer accepts")
	}
}

// TestControlAcceptErrors: accept errors (EMFILE, ENFILE, ECONNABORTED in
// turn, for 1.5 s, as when the process is out of file descriptors) do not
// stop the control socket: it backs off (5 ms doubling), logs one line,
// and serves the request that waited once accept works again.
func TestControlAcceptErrors(t *testing.T) {
	errs := []error{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED}
	var (
		calls     atomic.Int32
		failUntil atomic.Int64
	)
	failUntil.Store(time.Now().Add(1500 * time.Millisecond).UnixNano())
	s, log := startAcceptServer(t, func(ln *net.UnixListener) (*net.UnixConn, error) {
		n := calls.Add(1)
		if time.Now().UnixNano() < failUntil.Load() {
			return nil, &net.OpError{Op: "accept", Net: "unix", Err: errs[n%3]}
		}
		return ln.AcceptUnix()
	})
	start := time.Now()
	statusOK(t, s.Path()) // waits in the backlog while accept fails
	took := time.Since(start)
	t.Logf("measure: accept failing for 1.5 s: %d accept calls, served after %v, %d warning lines",
		calls.Load(), took.Round(time.Millisecond), log.lines("accept failed"))
	if n := calls.Load(); n > 16 {
		t.Errorf("%d accept calls while failing for 1.5 s, want a back-off (at most 16)", n)
	}
	if took > 3500*time.Millisecond {
		t.Errorf("served %v after the start, want within 1 s of accept working again", took)
	}
	if n := log.lines("accept failed; retrying"); n != 1 {
		t.Errorf("%d accept-error lines, want 1 (rate-limited):\n%s", n, log)
	}
	if log.lines("accepting again") != 1 {
		t.Errorf("no line saying the socket accepts again:\n%s", log)
	}
	if log.lines("stops") != 0 {
		t.Errorf("the control socket says it stops:\n%s", log)
	}
	// The back-off starts again at 5 ms after a success.
	before := calls.Load()
	failUntil.Store(time.Now().Add(30 * time.Millisecond).UnixNano())
	start = time.Now()
	statusOK(t, s.Path())
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("30 ms of accept errors after a success delayed a request %v (%d calls), want the back-off to start again at 5 ms", d, calls.Load()-before)
	}
}

// TestControlConnCap: 200 idle connections; 64 are held, the rest get a
// short error at once; once the idle ones close, status is served.
func TestControlConnCap(t *testing.T) {
	s, log := startAcceptServer(t, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("unix", s.Path())
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	// Every connection is either held (idle, the server waits for its
	// request) or answered busy at once.
	var busy atomic.Int32
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err == nil && strings.Contains(line, "busy") {
				busy.Add(1)
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	held := len(s.conns)
	s.mu.Unlock()
	t.Logf("measure: 200 idle control connections: %d held, %d answered busy, %d refusal log lines", held, busy.Load(), log.lines("too many connections"))
	if held != maxControlConns || int(busy.Load()) != 200-maxControlConns {
		t.Errorf("%d held, %d busy; want %d held and the other %d refused", held, busy.Load(), maxControlConns, 200-maxControlConns)
	}
	if n := log.lines("too many connections"); n != 1 {
		t.Errorf("%d refusal lines, want 1 (rate-limited)", n)
	}
	// While full, a request is refused with the reason.
	if _, err := ControlCall(s.Path(), ControlRequest{Cmd: CmdStatus}); err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("status while full: %v, want a busy error", err)
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := ControlCall(s.Path(), ControlRequest{Cmd: CmdStatus, Names: true})
		if err == nil && resp.OK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status after the idle connections closed: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
