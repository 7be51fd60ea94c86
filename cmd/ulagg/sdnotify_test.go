package main

import (
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// notifySocket listens where $NOTIFY_SOCKET points and returns what
// arrives, one datagram per string.
func notifySocket(t *testing.T, abstract bool) (addr string, recv func(timeout time.Duration) (string, bool)) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	addr = name
	if abstract {
		addr = "@ulagg-test-" + filepath.Base(t.TempDir())
		name = "\x00" + addr[1:]
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return addr, func(timeout time.Duration) (string, bool) {
		_ = c.SetReadDeadline(time.Now().Add(timeout))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			return "", false
		}
		return string(buf[:n]), true
	}
}

func TestSDNotify(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		addr, recv := notifySocket(t, abstract)
		n := &sdNotifier{addr: addr, log: slog.New(slog.DiscardHandler)}
		n.ready(2)
		n.reloading()
		n.reloaded(errors.New("bad file"))
		n.stopping()
		for _, want := range []string{"READY=1\nSTATUS=running, 2 laggs", "RELOADING=1\nMONOTONIC_USEC=", "READY=1\nSTATUS=reload refused", "STOPPING=1"} {
			got, ok := recv(time.Second)
			if !ok || !strings.HasPrefix(got, want) {
				t.Errorf("abstract=%v: got %q, want %q...", abstract, got, want)
			}
		}
	}
	// Outside systemd nothing is sent and nothing fails.
	(&sdNotifier{log: slog.New(slog.DiscardHandler)}).ready(1)
	if err := sdSend("relative/path", "X=1"); err == nil {
		t.Error("sdSend to a relative path: no error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", "1", 0, false}, // meant for another process
		{"0", "", 0, true},
		{"x", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := watchdogInterval()
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.err)
		}
	}
}

// TestSDWatchdog: pings while the check passes; a failing or stuck check
// stops them, and they resume once it answers again.
func TestSDWatchdog(t *testing.T) {
	addr, recv := notifySocket(t, false)
	n := &sdNotifier{addr: addr, log: slog.New(slog.DiscardHandler)}
	var mode atomic.Int32 // 0 ok, 1 fail, 2 stuck
	release := make(chan struct{})
	w := startSDWatchdog(n, 80*time.Millisecond, func() error {
		switch mode.Load() {
		case 1:
			return errors.New("broken")
		case 2:
			<-release
		}
		return nil
	})
	defer w.close()
	for range 3 {
		if got, ok := recv(time.Second); !ok || got != "WATCHDOG=1" {
			t.Fatalf("healthy: got %q, %v; want WATCHDOG=1", got, ok)
		}
	}
	for _, m := range []int32{1, 2} {
		mode.Store(m)
		time.Sleep(60 * time.Millisecond) // a ping already under way may land
		for {
			if _, ok := recv(10 * time.Millisecond); !ok {
				break
			}
		}
		if got, ok := recv(300 * time.Millisecond); ok {
			t.Errorf("check mode %d: got %q, want no ping", m, got)
		}
	}
	mode.Store(0)
	close(release)
	if got, ok := recv(time.Second); !ok || got != "WATCHDOG=1" {
		t.Errorf("healthy again: got %q, %v; want WATCHDOG=1", got, ok)
	}
}
