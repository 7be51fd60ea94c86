package appliance_test

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

const iperf3TOML = `
[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["10.9.0.1/24", "fd09::1/64"]
[[lagg.port]]
name = "sp0"
kind = "wire"
[[service]]
kind = "iperf3"
port = 5201
max_conns_per_source = 5
idle_timeout_s = 1
`

var iperf3Svc = config.Service{Kind: "iperf3", Port: 5201, MaxConnsPerSource: 5, IdleTimeout: time.Second}

const testCookie = "abcdefghijklmnopqrstuvwxyz2345672345\x00"

// iperf3Client is a fake iperf3 client: just enough of the protocol to
// drive the service the way iperf3 -c does.
type iperf3Client struct {
	t    *testing.T
	b    *bench
	addr string // the appliance's address it dials
	ctrl net.Conn
}

func (c *iperf3Client) expect(state byte) {
	c.t.Helper()
	var b [1]byte
	_ = c.ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c.ctrl, b[:]); err != nil {
		c.t.Fatalf("waiting for state %d: %v", state, err)
	}
	if b[0] != state {
		c.t.Fatalf("got state %d, want %d", int8(b[0]), int8(state))
	}
}

func writeJSON(t *testing.T, c net.Conn, v any) {
	t.Helper()
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(j)))
	if _, err := c.Write(append(l[:], j...)); err != nil {
		t.Fatal(err)
	}
}

func readJSON(t *testing.T, c net.Conn, v any) {
	t.Helper()
	var l [4]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, binary.BigEndian.Uint32(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(buf, v); err != nil {
		t.Fatalf("%v: %q", err, buf)
	}
}

func newIperf3Client(t *testing.T, b *bench, cookie string) *iperf3Client {
	return newIperf3ClientTo(t, b, "10.9.0.1", cookie)
}

func newIperf3ClientTo(t *testing.T, b *bench, addr, cookie string) *iperf3Client {
	c := &iperf3Client{t: t, b: b, addr: addr, ctrl: b.dial(t, addr, 5201)}
	if _, err := c.ctrl.Write([]byte(cookie)); err != nil {
		t.Fatal(err)
	}
	return c
}

type streamResult struct {
	ID    int    `json:"id"`
	Bytes uint64 `json:"bytes"`
}

type results struct {
	SenderRetrans *int           `json:"sender_has_retransmits"`
	CPU           *float64       `json:"cpu_util_total"`
	Streams       []streamResult `json:"streams"`
}

// runTest runs a whole test of n streams for d and returns the client's
// byte counts per stream and the server's results.
func (c *iperf3Client) runTest(n int, reverse bool, d time.Duration) ([]uint64, results) {
	t := c.t
	t.Helper()
	c.expect(9)
	writeJSON(t, c.ctrl, map[string]any{"tcp": true, "time": 1, "parallel": n, "reverse": reverse, "len": 32768, "client_version": "fake"})
	c.expect(10)
	streams := make([]net.Conn, n)
	for i := range streams {
		streams[i] = c.b.dial(t, c.addr, 5201)
		if _, err := streams[i].Write([]byte(testCookie)); err != nil {
			t.Fatal(err)
		}
	}
	c.expect(1)
	c.expect(2)
	counts := make([]uint64, n)
	done := make(chan struct{})
	for i, s := range streams {
		go func() {
			defer func() { done <- struct{}{} }()
			buf := make([]byte, 32768)
			end := time.Now().Add(d)
			if reverse {
				// A write that times out may have sent part of what it
				// does not count: only reads get a deadline.
				_ = s.SetReadDeadline(end)
			}
			for time.Now().Before(end) {
				var k int
				var err error
				if reverse {
					k, err = s.Read(buf)
				} else {
					k, err = s.Write(buf)
				}
				counts[i] += uint64(k)
				if err != nil {
					return
				}
			}
		}()
	}
	for range streams {
		<-done
	}
	if _, err := c.ctrl.Write([]byte{4}); err != nil {
		t.Fatal(err)
	}
	c.expect(13)
	// iperf3 3.12 really sends -1 as an unsigned 64-bit number here.
	mine := map[string]any{"cpu_util_total": 0, "cpu_util_user": 0, "cpu_util_system": 0, "sender_has_retransmits": uint64(math.MaxUint64)}
	var ss []map[string]any
	for i := range streams {
		ss = append(ss, map[string]any{"id": []int{1, 3, 4, 5}[i], "bytes": counts[i], "retransmits": -1, "jitter": 0, "errors": 0, "packets": 0})
	}
	mine["streams"] = ss
	writeJSON(t, c.ctrl, mine)
	var theirs results
	readJSON(t, c.ctrl, &theirs)
	c.expect(14)
	if _, err := c.ctrl.Write([]byte{16}); err != nil {
		t.Fatal(err)
	}
	// The server is free for the next test once it closes the control
	// connection, as iperf3's is.
	_ = c.ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.ctrl.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after IPERF_DONE: read %d, %v; want EOF", n, err)
	}
	return counts, theirs
}

// TestIperf3Service runs iperf3 tests in both directions with several
// streams against the service and checks that it counts what crossed.
func TestIperf3Service(t *testing.T) {
	b := newBench(t, iperf3TOML, "sp0")
	for _, tc := range []struct {
		name    string
		addr    string
		streams int
		reverse bool
	}{
		{"send 1", "10.9.0.1", 1, false},
		{"reverse 1", "10.9.0.1", 1, true},
		{"send 3", "10.9.0.1", 3, false},
		{"reverse 4", "10.9.0.1", 4, true},
		{"IPv6 reverse 2", "fd09::1", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newIperf3ClientTo(t, b, tc.addr, testCookie)
			counts, res := c.runTest(tc.streams, tc.reverse, 300*time.Millisecond)
			if res.SenderRetrans == nil || res.CPU == nil || len(res.Streams) != tc.streams {
				t.Fatalf("results %+v: want the fields iperf3 requires and %d streams", res, tc.streams)
			}
			for i, s := range res.Streams {
				if want := []int{1, 3, 4, 5}[i]; s.ID != want {
					t.Errorf("stream %d: got id %d, want %d", i, s.ID, want)
				}
				if s.Bytes == 0 || counts[i] == 0 {
					t.Errorf("stream %d: server %d bytes, client %d: want both > 0", i, s.Bytes, counts[i])
				}
				// What the client read, the server sent; what the client
				// wrote may still be in flight when the server stops.
				if tc.reverse && s.Bytes < counts[i] || !tc.reverse && s.Bytes > counts[i] {
					t.Errorf("stream %d: server %d bytes, client %d", i, s.Bytes, counts[i])
				}
			}
		})
	}
}

// TestIperf3Busy: a second client during a test is told ACCESS_DENIED, as
// iperf3's server does, and the test in progress goes on.
func TestIperf3Busy(t *testing.T) {
	b := newBench(t, iperf3TOML, "sp0")
	first := newIperf3Client(t, b, testCookie)
	first.expect(9)
	second := newIperf3Client(t, b, strings.Replace(testCookie, "a", "b", 1))
	second.expect(0xff)
	// The first test can still finish, and after it a new one runs.
	writeJSON(t, first.ctrl, map[string]any{"tcp": true, "parallel": 1})
	first.expect(10)
	// A client that quits while its streams connect frees the server at
	// once, not after idle_timeout_s (1 s here). Before, the server
	// waited for the streams until the timeout.
	_ = first.ctrl.Close()
	time.Sleep(300 * time.Millisecond)
	next := newIperf3Client(t, b, testCookie)
	next.expect(9)
}

// TestIperf3NoProgress: a test whose streams stop moving is reset after
// idle_timeout_s and counted; one that keeps moving runs longer than that.
func TestIperf3NoProgress(t *testing.T) {
	b := newBench(t, iperf3TOML, "sp0")
	st := b.a.ServiceStats(iperf3Svc)
	c := newIperf3Client(t, b, testCookie)
	// 2.5 s of data with idle_timeout_s = 1: progress keeps the test.
	c.runTest(1, false, 2500*time.Millisecond)
	if got := st.TimedOut.Load(); got != 0 {
		t.Fatalf("a busy 2.5 s test: got %d timed out, want 0", got)
	}
	c = newIperf3Client(t, b, testCookie)
	c.expect(9)
	writeJSON(t, c.ctrl, map[string]any{"tcp": true, "parallel": 1})
	c.expect(10)
	s := b.dial(t, "10.9.0.1", 5201)
	if _, err := s.Write([]byte(testCookie)); err != nil {
		t.Fatal(err)
	}
	c.expect(1)
	c.expect(2)
	_ = c.ctrl.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.ctrl.Read(make([]byte, 1)); err == nil {
		t.Fatal("a test with no progress: the control connection is still open")
	}
	if got := st.TimedOut.Load(); got != 1 {
		t.Fatalf("a test with no progress: got %d timed out, want 1", got)
	}
}

// TestIperf3Hostile: a bad cookie, an oversized JSON length, an
// unsupported test and a client that stops talking are each refused or
// reset, and counted; none stalls the service.
func TestIperf3Hostile(t *testing.T) {
	b := newBench(t, iperf3TOML, "sp0")
	closed := func(c net.Conn, what string) {
		t.Helper()
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 16)
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue
			}
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("%s: connection still open after 5 s", what)
			}
			return
		}
	}
	st := b.a.ServiceStats(iperf3Svc)
	if st == nil {
		t.Fatal("iperf3 service not running")
	}

	bad := newIperf3Client(t, b, strings.Repeat("A", 37))
	closed(bad.ctrl, "bad cookie")
	if got := st.Malformed.Load(); got != 1 {
		t.Fatalf("after a bad cookie: got %d malformed, want 1", got)
	}

	huge := newIperf3Client(t, b, testCookie)
	huge.expect(9)
	if _, err := huge.ctrl.Write([]byte{0x7f, 0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	closed(huge.ctrl, "huge JSON length")
	if got := st.Malformed.Load(); got != 2 {
		t.Fatalf("after a huge JSON length: got %d malformed, want 2", got)
	}

	for _, p := range []map[string]any{
		{"udp": true, "parallel": 1},
		{"tcp": true, "parallel": 5}, // max_conns_per_source 5 allows 4 streams
		{"tcp": true, "bidirectional": true},
	} {
		c := newIperf3Client(t, b, testCookie)
		c.expect(9)
		writeJSON(t, c.ctrl, p)
		c.expect(0xfe)
		var e [8]byte
		if _, err := io.ReadFull(c.ctrl, e[:]); err != nil {
			t.Fatalf("%v: reading the error: %v", p, err)
		}
		if got := binary.BigEndian.Uint32(e[:4]); got != 13 {
			t.Fatalf("%v: got i_errno %d, want 13 (IEUNIMP)", p, got)
		}
		closed(c.ctrl, fmt.Sprint(p))
	}

	// Slowloris: a test whose client sends nothing is reset after
	// idle_timeout_s (1 s), and the next client gets its test.
	slow := newIperf3Client(t, b, testCookie[:10])
	start := time.Now()
	closed(slow.ctrl, "slow cookie")
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("slow cookie closed after %v, want about idle_timeout_s", d)
	}
	stalled := newIperf3Client(t, b, testCookie)
	stalled.expect(9)
	closed(stalled.ctrl, "stalled parameters")
	if got := st.TimedOut.Load(); got != 2 {
		t.Fatalf("got %d timed out, want 2", got)
	}
	c := newIperf3Client(t, b, testCookie)
	c.runTest(1, false, 100*time.Millisecond)
}

// TestIperf3Close: stopping the appliance mid-test ends the test's
// goroutines and connections (the bench's Close waits for them).
func TestIperf3Close(t *testing.T) {
	b := newBench(t, iperf3TOML, "sp0")
	c := newIperf3Client(t, b, testCookie)
	c.expect(9)
	writeJSON(t, c.ctrl, map[string]any{"tcp": true, "parallel": 2, "reverse": true})
	c.expect(10)
	for range 2 {
		s := b.dial(t, "10.9.0.1", 5201)
		if _, err := s.Write([]byte(testCookie)); err != nil {
			t.Fatal(err)
		}
	}
	c.expect(1)
	c.expect(2)
	done := make(chan struct{})
	go func() { b.a.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return within 10 s of stopping a running iperf3 test")
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "appliance.routineIperf3") || strings.Contains(stacks, "appliance.(*iperf3Server)") {
		t.Fatalf("iperf3 goroutines still run after Close:\n%s", stacks)
	}
}
