package appliance

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The iperf3 service speaks iperf3's TCP protocol (esnet/iperf, 3.x) so
// that an operator measures a bond with the stock `iperf3 -c ADDRESS`:
// normal (client sends), -R (the appliance sends) and -P streams. UDP,
// SCTP and --bidir are answered with iperf3's "not implemented" error.
//
// Like iperf3's own server it runs one test at a time: a client that
// arrives during a test is told the server is busy (ACCESS_DENIED). The
// control connection carries single-byte states and JSON blobs (a 4-byte
// big-endian length, then the JSON); data streams are extra connections to
// the same port that first send the test's 37-byte cookie.
//
// What a peer can make it hold is bounded: at most iperf3MaxStreams
// streams (and never more than max_conns_per_source allows), one JSON
// buffer of iperf3MaxJSON per service, one iperf3RecvBuffer per receiving
// stream and one shared, read-only send buffer. A cookie or JSON that is
// malformed or too long closes the connection and is counted (Malformed);
// a test with no progress on any stream and no control message for
// idle_timeout_s is reset (TimedOut).
const (
	iperf3CookieSize  = 37       // 36 characters of [a-z2-7] and a NUL
	iperf3MaxJSON     = 64 << 10 // params are ~300 B, results ~200 B a stream
	iperf3MaxStreams  = 128      // iperf3's own -P limit
	iperf3SendBuffer  = 128 << 10
	iperf3RecvBuffer  = 64 << 10
	iperf3DefaultPort = 5201
)

// iperf3 control states (iperf.h); the two negative ones as bytes.
const (
	iperf3TestStart       = 1
	iperf3TestRunning     = 2
	iperf3TestEnd         = 4
	iperf3ParamExchange   = 9
	iperf3CreateStreams   = 10
	iperf3ClientTerminate = 12
	iperf3ExchangeResults = 13
	iperf3DisplayResults  = 14
	iperf3Done            = 16
	iperf3AccessDenied    = 0xff // -1
	iperf3ServerError     = 0xfe // -2

	iperf3ErrUnimp = 13 // IEUNIMP, "not implemented yet"
)

// iperf3Server is the state of one iperf3 service: the test in progress.
type iperf3Server struct {
	svc  *service
	send []byte // read-only payload every sending stream writes

	mu sync.Mutex
	// +checklocks:mu
	test *iperf3Test
}

// iperf3Test is one client's test. Its fields other than mu's are owned by
// the goroutine that runs the control connection.
type iperf3Test struct {
	cookie [iperf3CookieSize]byte
	json   [iperf3MaxJSON]byte // params in, results in and out
	client string              // the control connection's peer, for logs

	mu sync.Mutex
	// +checklocks:mu
	want int // streams still to come; 0 once they are all here
	// +checklocks:mu
	streams []*svcConn
	ready   chan struct{} // closed when the last stream arrives
}

// iperf3Params is the part of the client's parameters the server uses.
type iperf3Params struct {
	TCP      bool `json:"tcp"`
	UDP      bool `json:"udp"`
	SCTP     bool `json:"sctp"`
	Parallel int  `json:"parallel"`
	Reverse  bool `json:"reverse"`
	Bidir    bool `json:"bidirectional"`
	Len      int  `json:"len"`
	Omit     int  `json:"omit"` // seconds not counted at the start
}

// iperf3Results is what each side sends in EXCHANGE_RESULTS.
type iperf3Results struct {
	CPUTotal      float64          `json:"cpu_util_total"`
	CPUUser       float64          `json:"cpu_util_user"`
	CPUSystem     float64          `json:"cpu_util_system"`
	SenderRetrans int              `json:"sender_has_retransmits"`
	Streams       []iperf3StreamRS `json:"streams"`
}

type iperf3StreamRS struct {
	ID          int     `json:"id"`
	Bytes       uint64  `json:"bytes"`
	Retransmits int     `json:"retransmits"`
	Jitter      float64 `json:"jitter"`
	Errors      int     `json:"errors"`
	Packets     int     `json:"packets"`
	StartTime   float64 `json:"start_time"`
	EndTime     float64 `json:"end_time"`
}

// errIperf3Malformed marks a protocol violation by the client.
var errIperf3Malformed = errors.New("malformed iperf3 message")

func newIperf3Server(svc *service) *iperf3Server {
	return &iperf3Server{svc: svc, send: make([]byte, iperf3SendBuffer)}
}

// maxStreams is the most -P a test may ask: the control connection and
// the streams all count against max_conns_per_source.
func (s *iperf3Server) maxStreams() int {
	return max(1, min(iperf3MaxStreams, s.svc.budget.MaxConnsPerSource-1))
}

// routineConn reads a new connection's cookie and makes it the control
// connection of a new test, a stream of the test in progress, or turns it
// away as busy.
func (s *iperf3Server) routineConn(c *svcConn) {
	svc := s.svc
	defer svc.wg.Done()
	var cookie [iperf3CookieSize]byte
	c.armRead(time.Now(), svc.budget.IdleTimeout)
	if err := s.readFull(c, cookie[:]); err != nil {
		return
	}
	if !validIperf3Cookie(cookie) {
		svc.stats.Malformed.Add(1)
		c.abort()
		return
	}
	s.mu.Lock()
	t := s.test
	if t == nil {
		t = &iperf3Test{cookie: cookie, ready: make(chan struct{})}
		s.test = t
		s.mu.Unlock()
		s.run(c, t)
		return
	}
	s.mu.Unlock()
	if t.cookie == cookie && t.addStream(c) {
		return // the test owns it now
	}
	// iperf3's server neither reads from nor waits for a second client.
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte{iperf3AccessDenied})
	_ = c.Close()
}

// addStream hands c to t if t is waiting for streams.
func (t *iperf3Test) addStream(c *svcConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.want == 0 {
		return false
	}
	// In accept order, which is the client's connect order: the goroutines
	// that read the cookies may finish in any order.
	i := len(t.streams)
	for i > 0 && t.streams[i-1].accepted > c.accepted {
		i--
	}
	t.streams = slices.Insert(t.streams, i, c)
	if t.want--; t.want == 0 {
		close(t.ready)
	}
	return true
}

// validIperf3Cookie reports whether b is what iperf3's make_cookie makes.
func validIperf3Cookie(b [iperf3CookieSize]byte) bool {
	for _, ch := range b[:iperf3CookieSize-1] {
		if !('a' <= ch && ch <= 'z' || '2' <= ch && ch <= '7') {
			return false
		}
	}
	return b[iperf3CookieSize-1] == 0
}

// readFull reads len(b) bytes from c, counting a timeout.
func (s *iperf3Server) readFull(c *svcConn, b []byte) error {
	_, err := io.ReadFull(c, b)
	if err != nil {
		s.failed(c, err)
	}
	return err
}

// failed ends c after err: a timeout resets it and is counted.
func (s *iperf3Server) failed(c *svcConn, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		s.svc.stats.TimedOut.Add(1)
		c.abort()
		return
	}
	if errors.Is(err, errIperf3Malformed) {
		s.svc.stats.Malformed.Add(1)
		c.abort()
		return
	}
	_ = c.Close()
}

// run runs test t on its control connection ctrl, then closes both.
func (s *iperf3Server) run(ctrl *svcConn, t *iperf3Test) {
	if a := ctrl.RemoteAddr(); a != nil {
		t.client = a.String()
	}
	defer func() {
		// The next client may start as soon as it sees this one closed.
		s.mu.Lock()
		s.test = nil
		s.mu.Unlock()
		t.mu.Lock()
		t.want = 0 // late streams are turned away
		streams := t.streams
		t.mu.Unlock()
		for _, c := range streams {
			_ = c.Close()
		}
		_ = ctrl.Close()
	}()
	if err := s.converse(ctrl, t); err != nil {
		s.failed(ctrl, err)
		s.svc.log.Debug("iperf3 test ended", "client", t.client, "err", err)
	}
}

// converse drives the control connection from PARAM_EXCHANGE to the end.
func (s *iperf3Server) converse(ctrl *svcConn, t *iperf3Test) error {
	idle := s.svc.budget.IdleTimeout
	deadline := func() { _ = ctrl.SetDeadline(time.Now().Add(idle)) }
	deadline()
	if err := writeState(ctrl, iperf3ParamExchange); err != nil {
		return err
	}
	raw, err := readIperf3JSON(ctrl, t.json[:])
	if err != nil {
		return err
	}
	var p iperf3Params
	if err := json.Unmarshal(raw, &p); err != nil {
		return fmt.Errorf("%w: parameters: %v", errIperf3Malformed, err)
	}
	p.Parallel = max(p.Parallel, 1)
	switch {
	case p.UDP || p.SCTP || !p.TCP:
		return s.refuse(ctrl, "only TCP tests are supported")
	case p.Bidir:
		return s.refuse(ctrl, "--bidir is not supported")
	case p.Parallel > s.maxStreams():
		return s.refuse(ctrl, fmt.Sprintf("-P %d is more than the %d streams allowed", p.Parallel, s.maxStreams()))
	}
	chunk := len(s.send)
	if p.Len > 0 {
		chunk = min(p.Len, chunk)
	}

	t.mu.Lock()
	t.want = p.Parallel
	t.mu.Unlock()
	if err := writeState(ctrl, iperf3CreateStreams); err != nil {
		return err
	}
	// From now until TEST_END the client sends nothing on the control
	// connection but TEST_END, CLIENT_TERMINATE or its close: one read,
	// on its own goroutine, tells whichever comes (a client that gives up
	// while its streams connect frees the server at once). The idle
	// timeout is then enforced below, by progress.
	_ = ctrl.SetReadDeadline(time.Time{})
	msg := make(chan iperf3Msg, 1)
	s.svc.wg.Add(1)
	go func() {
		defer s.svc.wg.Done()
		var b [1]byte
		_, err := io.ReadFull(ctrl, b[:])
		msg <- iperf3Msg{b[0], err}
	}()
	wait := time.NewTimer(idle)
	select {
	case <-t.ready:
		wait.Stop()
	case <-wait.C:
		return fmt.Errorf("streams did not arrive: %w", timeoutError{})
	case m := <-msg:
		wait.Stop()
		if m.err != nil {
			return m.err
		}
		return fmt.Errorf("%w: state %d before the streams", errIperf3Malformed, int8(m.state))
	case <-s.svc.ln.cancel:
		wait.Stop()
		return net.ErrClosed
	}
	t.mu.Lock()
	streams := t.streams
	t.mu.Unlock()

	_ = ctrl.SetWriteDeadline(time.Now().Add(idle))
	if err := writeState(ctrl, iperf3TestStart); err != nil {
		return err
	}
	if err := writeState(ctrl, iperf3TestRunning); err != nil {
		return err
	}
	start := time.Now()
	counts := make([]atomic.Uint64, len(streams))
	// Like iperf3's server, count from the end of the omitted start (-O),
	// as the client does.
	base := make([]atomic.Uint64, len(streams))
	omit := time.Duration(min(max(p.Omit, 0), 3600)) * time.Second
	// With no -O nothing is omitted: a timer of 0 would still fire a
	// little later, after the streams had counted some bytes.
	var omitted atomic.Bool
	omitTimer := time.AfterFunc(omit, func() {
		for i := range counts {
			base[i].Store(counts[i].Load())
		}
		omitted.Store(true)
	})
	if omit == 0 {
		omitTimer.Stop()
	}
	defer omitTimer.Stop()
	var wg sync.WaitGroup
	for i, c := range streams {
		_ = c.SetDeadline(time.Time{})
		wg.Add(1)
		if p.Reverse {
			go routineIperf3Send(&wg, c, s.send[:chunk], &counts[i])
		} else {
			go routineIperf3Recv(&wg, c, &counts[i])
		}
	}
	stop := func() {
		for _, c := range streams {
			_ = c.Close()
		}
		wg.Wait()
	}

	// Wait for TEST_END; a test with no progress for idle is reset.
	var last uint64
	var m iperf3Msg
	tick := time.NewTicker(idle)
	for got := false; !got; {
		select {
		case m = <-msg:
			got = true
			if m.err != nil {
				tick.Stop()
				stop()
				return m.err
			}
		case <-tick.C:
			if n := sum(counts); n != last {
				last = n
				continue
			}
			tick.Stop()
			stop()
			return fmt.Errorf("no progress for %v: %w", idle, timeoutError{})
		case <-s.svc.ln.cancel:
			tick.Stop()
			stop()
			return net.ErrClosed
		}
	}
	tick.Stop()
	var b [1]byte
	elapsed := time.Since(start)
	stop()
	omitTimer.Stop()
	if omitted.Load() {
		elapsed -= omit
	}
	switch m.state {
	case iperf3TestEnd:
	case iperf3ClientTerminate:
		return nil
	default:
		return fmt.Errorf("%w: state %d during the test", errIperf3Malformed, int8(m.state))
	}

	deadline()
	if err := writeState(ctrl, iperf3ExchangeResults); err != nil {
		return err
	}
	raw, err = readIperf3JSON(ctrl, t.json[:])
	if err != nil {
		return err
	}
	// Only the stream ids are read: iperf3 3.12 writes -1 as
	// 18446744073709551615 in some of the other fields.
	var theirs struct {
		Streams []struct {
			ID int `json:"id"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(raw, &theirs); err != nil {
		return fmt.Errorf("%w: results: %v", errIperf3Malformed, err)
	}
	mine := iperf3Results{SenderRetrans: -1, Streams: make([]iperf3StreamRS, len(streams))}
	if p.Reverse {
		mine.SenderRetrans = 0
	}
	for i := range streams {
		// The client matches results by stream id; it numbers its
		// streams in the order it connected them, as they arrived here.
		id := iperf3StreamID(i)
		if i < len(theirs.Streams) {
			id = theirs.Streams[i].ID
		}
		mine.Streams[i] = iperf3StreamRS{ID: id, Bytes: counts[i].Load() - base[i].Load(), Retransmits: -1, EndTime: elapsed.Seconds()}
	}
	out, err := json.Marshal(mine)
	if err != nil {
		return err
	}
	if err := writeIperf3JSON(ctrl, out); err != nil {
		return err
	}
	if err := writeState(ctrl, iperf3DisplayResults); err != nil {
		return err
	}
	// The client answers IPERF_DONE and closes; either ends the test.
	if _, err := io.ReadFull(ctrl, b[:]); err == nil && b[0] != iperf3Done {
		return fmt.Errorf("%w: state %d after the results", errIperf3Malformed, int8(b[0]))
	}
	// Debug: a client can run short tests back to back.
	s.svc.log.Debug("iperf3 test", "client", t.client, "streams", len(streams),
		"reverse", p.Reverse, "bytes", sum(counts), "seconds", elapsed.Seconds())
	return nil
}

// iperf3StreamID is the id iperf3 gives its i-th stream: 1, then 3, 4, ….
func iperf3StreamID(i int) int {
	if i == 0 {
		return 1
	}
	return i + 2
}

// refuse tells the client the test cannot run (SERVER_ERROR, IEUNIMP).
func (s *iperf3Server) refuse(ctrl *svcConn, why string) error {
	s.svc.warnRefused(why, ctrl.key) // rate-limited: a peer cannot flood the log
	var b [9]byte
	b[0] = iperf3ServerError
	binary.BigEndian.PutUint32(b[1:], iperf3ErrUnimp)
	_, err := ctrl.Write(b[:])
	return err
}

// iperf3Msg is a state byte read from the control connection.
type iperf3Msg struct {
	state byte
	err   error
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func sum(counts []atomic.Uint64) uint64 {
	var n uint64
	for i := range counts {
		n += counts[i].Load()
	}
	return n
}

func writeState(c net.Conn, state byte) error {
	_, err := c.Write([]byte{state})
	return err
}

// readIperf3JSON reads one length-prefixed JSON blob into buf.
func readIperf3JSON(c net.Conn, buf []byte) ([]byte, error) {
	var l [4]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || n > uint32(len(buf)) {
		return nil, fmt.Errorf("%w: JSON of %d bytes (at most %d)", errIperf3Malformed, n, len(buf))
	}
	if _, err := io.ReadFull(c, buf[:n]); err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func writeIperf3JSON(c net.Conn, b []byte) error {
	var l [4]byte
	binary.BigEndian.PutUint32(l[:], uint32(len(b)))
	if _, err := c.Write(l[:]); err != nil {
		return err
	}
	_, err := c.Write(b)
	return err
}

// routineIperf3Recv reads a stream until it is closed, counting bytes.
func routineIperf3Recv(wg *sync.WaitGroup, c *svcConn, n *atomic.Uint64) {
	defer wg.Done()
	buf := make([]byte, iperf3RecvBuffer)
	for {
		k, err := c.Read(buf)
		n.Add(uint64(k))
		if err != nil {
			return
		}
	}
}

// routineIperf3Send writes payload to a stream until it is closed.
func routineIperf3Send(wg *sync.WaitGroup, c *svcConn, payload []byte, n *atomic.Uint64) {
	defer wg.Done()
	for {
		k, err := c.Write(payload)
		n.Add(uint64(k))
		if err != nil {
			return
		}
	}
}
