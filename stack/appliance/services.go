package appliance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ulagg/ulagg/config"
)

// The built-in services answer whoever reaches the lagg addresses, so
// they trust nothing from the wire: every resource a peer can make them
// hold is bounded.
//
//   - TCP services (tcp-echo, tcp-discard, http-status) accept at most
//     max_conns connections at once and max_conns_per_source from one
//     address (an IPv6 /64); a connection over either limit is reset as
//     soon as it is accepted. Their listen backlog is svcBacklog: SYNs
//     beyond it are answered with SYN cookies, which hold no state.
//   - Every accepted connection has svcConnBuffer bytes of send and of
//     receive buffer in the stack, and echo copies through a buffer of
//     svcCopyBuffer: a client that sends without reading is held back by
//     TCP's window, not by the appliance's memory.
//   - A connection that makes no progress (nothing read, or a write that
//     does not complete) for idle_timeout_s is reset.
//   - udp-echo never answers a source port below 1024 (see
//     reservedSourcePort) and answers each address at most
//     rate_per_source times a second (replyLimiter).
const (
	svcBacklog      = 128
	svcConnBuffer   = 64 << 10
	svcCopyBuffer   = 16 << 10
	svcMaxSources   = 4096             // udp-echo: addresses the rate limiter remembers
	svcLogEvery     = 10 * time.Second // at most one line per service about refused peers
	svcDeadlineSlop = 16               // a deadline is re-armed after 1/16 of the timeout
)

// services runs the built-in responders. The appliance calls apply and close
// with its own lock held (apply) or not (close); services has its own lock
// for the set of running services.
type services struct {
	mu sync.Mutex
	// +checklocks:mu
	a *Appliance
	// +checklocks:mu
	running map[config.Service]*service
	// +checklocks:mu
	guard *synFloodGuard // nil once closed
}

func newServices(a *Appliance) *services {
	return &services{a: a, running: map[config.Service]*service{}, guard: startSYNFloodGuard(a.s, a.log)}
}

// service is one listener and the connections it accepted.
type service struct {
	cfg    config.Service
	budget config.ServiceBudget
	log    *slog.Logger
	ln     *svcListener   // TCP kinds
	pc     *gonet.UDPConn // udp-echo
	back   *routeBack     // udp-echo: counts and reports replies with no route (noroute.go)
	http   *http.Server
	wg     sync.WaitGroup
	stats  ServiceStats
	warned atomic.Int64 // unix nanoseconds of the last line about refused peers

	connMu sync.Mutex
	// +checklocks:connMu
	conns map[*svcConn]struct{}
	// +checklocks:connMu
	perSource map[netip.Addr]int
	// +checklocks:connMu
	stopping bool // accepted connections are closed at once
}

// ServiceStats counts what a service refused.
type ServiceStats struct {
	// Refused counts connections reset at once: over max_conns or
	// max_conns_per_source.
	Refused atomic.Uint64
	// TimedOut counts connections reset after idle_timeout_s without
	// progress.
	TimedOut atomic.Uint64
	// Reserved counts udp-echo datagrams from a source port below 1024,
	// not answered.
	Reserved atomic.Uint64
	// Limited counts udp-echo datagrams over rate_per_source, not
	// answered.
	Limited atomic.Uint64
	// Malformed counts iperf3 connections closed for a bad cookie or
	// message (services_iperf3.go).
	Malformed atomic.Uint64
}

// apply starts the services in want that are not running and stops the
// ones that are no longer wanted; nics maps each lagg to its NIC.
func (ss *services) apply(want []config.Service, nics map[string]tcpip.NICID) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	keep := map[config.Service]bool{}
	for _, c := range want {
		keep[c] = true
	}
	for c, svc := range ss.running {
		if !keep[c] {
			svc.stop()
			delete(ss.running, c)
		}
	}
	for _, c := range want {
		if ss.running[c] != nil {
			continue
		}
		svc, err := ss.start(c, nics)
		if err != nil {
			return fmt.Errorf("service %s on port %d: %w", c.Kind, c.Port, err)
		}
		ss.running[c] = svc
	}
	return nil
}

// ServiceStats returns the counters of the running service c (as
// configured), or nil if it does not run.
func (a *Appliance) ServiceStats(c config.Service) *ServiceStats {
	a.mu.Lock()
	ss := a.services
	a.mu.Unlock()
	return ss.stats(c)
}

// stats returns the counters of the running service c, or nil.
func (ss *services) stats(c config.Service) *ServiceStats {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if svc := ss.running[c]; svc != nil {
		return &svc.stats
	}
	return nil
}

// start listens for c. A service restricted to one lagg binds to its NIC;
// otherwise it listens on every address, IPv4 and IPv6 (a dual-stack
// IPv6 endpoint).
//
// +checklocks:ss.mu
func (ss *services) start(c config.Service, nics map[string]tcpip.NICID) (*service, error) {
	addr := tcpip.FullAddress{Port: c.Port}
	if c.Lagg != "" {
		nic, ok := nics[c.Lagg]
		if !ok {
			return nil, fmt.Errorf("no lagg %s", c.Lagg)
		}
		addr.NIC = nic
	}
	svc := &service{
		cfg: c, budget: c.Budget(), log: ss.a.log, back: ss.a.noRoute,
		conns: map[*svcConn]struct{}{}, perSource: map[netip.Addr]int{},
	}
	switch c.Kind {
	case "udp-echo":
		pc, err := gonet.DialUDP(ss.a.s, &addr, nil, ipv6.ProtocolNumber)
		if err != nil {
			return nil, err
		}
		svc.pc = pc
		svc.wg.Add(1)
		go svc.routineUDPEcho()
	case "iperf3":
		ln, err := listenService(ss.a.s, addr, svc)
		if err != nil {
			return nil, err
		}
		svc.ln = ln
		svc.wg.Add(1)
		go svc.routineAccept(newIperf3Server(svc).routineConn)
	case "tcp-echo", "tcp-discard", "http-status":
		ln, err := listenService(ss.a.s, addr, svc)
		if err != nil {
			return nil, err
		}
		svc.ln = ln
		svc.wg.Add(1)
		if c.Kind == "http-status" {
			svc.http = &http.Server{
				Handler:           statusHandler(ss.a, c.Details),
				ReadHeaderTimeout: 10 * time.Second,
				ReadTimeout:       10 * time.Second,
				WriteTimeout:      10 * time.Second,
				IdleTimeout:       svc.budget.IdleTimeout,
				MaxHeaderBytes:    8 << 10,
				ErrorLog:          slog.NewLogLogger(ss.a.log.Handler(), slog.LevelDebug),
			}
			go func() {
				defer svc.wg.Done()
				_ = svc.http.Serve(ln)
			}()
			if c.Details {
				ss.a.log.Warn("http-status serves every lagg's detailed status (MACs, LACP partners and keys) to whoever reaches the lagg addresses; leave details off for a health check",
					"port", c.Port, "lagg", c.Lagg)
			}
		} else {
			go svc.routineAccept(svc.routineConn)
		}
	default:
		return nil, fmt.Errorf("unknown service kind %q", c.Kind)
	}
	b := svc.budget
	switch c.Kind {
	case "udp-echo":
		ss.a.log.Info("service started", "kind", c.Kind, "port", c.Port, "lagg", c.Lagg, "rate_per_source", b.RatePerSource)
	default:
		ss.a.log.Info("service started", "kind", c.Kind, "port", c.Port, "lagg", c.Lagg,
			"max_conns", b.MaxConns, "max_conns_per_source", b.MaxConnsPerSource, "idle_timeout", b.IdleTimeout)
	}
	return svc, nil
}

func (ss *services) close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for c, svc := range ss.running {
		svc.stop()
		delete(ss.running, c)
	}
	if ss.guard != nil {
		ss.guard.close()
		ss.guard = nil
	}
}

func (svc *service) stop() {
	switch {
	case svc.http != nil:
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = svc.http.Shutdown(ctx)
		cancel()
		_ = svc.http.Close()
	case svc.ln != nil:
		_ = svc.ln.Close()
	case svc.pc != nil:
		_ = svc.pc.Close()
	}
	svc.connMu.Lock()
	svc.stopping = true
	conns := make([]*svcConn, 0, len(svc.conns))
	for c := range svc.conns {
		conns = append(conns, c)
	}
	svc.connMu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	svc.wg.Wait()
}

// warnRefused logs, at most once every svcLogEvery, that peers were
// refused, with the counts so far: an attacker cannot flood the log.
func (svc *service) warnRefused(why string, from netip.Addr) {
	now := time.Now().UnixNano()
	last := svc.warned.Load()
	if now-last < int64(svcLogEvery) || !svc.warned.CompareAndSwap(last, now) {
		return
	}
	svc.log.Warn("service refused a peer", "kind", svc.cfg.Kind, "port", svc.cfg.Port, "why", why, "from", from,
		"refused", svc.stats.Refused.Load(), "timed_out", svc.stats.TimedOut.Load(),
		"reserved_port", svc.stats.Reserved.Load(), "rate_limited", svc.stats.Limited.Load())
}

// sourceKey is what the per-source limits count by: the address, or the
// /64 of an IPv6 address (a host on an IPv6 link can use any address of
// its /64).
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// --- TCP ---

// svcListener is a TCP listener on the appliance's stack whose Accept
// applies the service's connection limits. It is gonet's listener with
// the endpoint at hand, so that a refused connection can be reset and an
// accepted one given bounded buffers.
type svcListener struct {
	svc    *service
	s      *gstack.Stack
	ep     tcpip.Endpoint
	wq     waiter.Queue
	cancel chan struct{}
	once   sync.Once
}

// holdsData reports whether the service can be made to hold a client's
// data (echo waits for the client to read its answer; http-status answers):
// those get small fixed buffers. tcp-discard reads and drops at once, so it
// keeps the stack's default windows and the link's full speed.
func (svc *service) holdsData() bool {
	return svc.cfg.Kind != "tcp-discard" && svc.cfg.Kind != "iperf3" // iperf3: reads or sends at once, like discard
}

func listenService(s *gstack.Stack, addr tcpip.FullAddress, svc *service) (*svcListener, error) {
	l := &svcListener{svc: svc, s: s, cancel: make(chan struct{})}
	ep, terr := s.NewEndpoint(tcp.ProtocolNumber, ipv6.ProtocolNumber, &l.wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	// Accepted connections start with the listener's receive buffer.
	if svc.holdsData() {
		ep.SocketOptions().SetReceiveBufferSize(svcConnBuffer, true)
	}
	// A service restarted (its lagg or VLAN got a new NIC) binds again
	// while its closed connections linger in TIME_WAIT.
	ep.SocketOptions().SetReuseAddress(true)
	if addr.NIC != 0 {
		// Bound to its interface's NIC: gVisor demultiplexes by device,
		// not by the NIC an unspecified address is bound with.
		if terr := ep.SocketOptions().SetBindToDevice(int32(addr.NIC)); terr != nil {
			ep.Close()
			return nil, fmt.Errorf("bind to NIC %d: %s", addr.NIC, terr)
		}
	}
	if terr := ep.Bind(addr); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("bind: %s", terr)
	}
	if terr := ep.Listen(svcBacklog); terr != nil {
		ep.Close()
		return nil, fmt.Errorf("listen: %s", terr)
	}
	l.ep = ep
	return l, nil
}

// Accept returns the next connection within the service's limits,
// resetting those over them.
func (l *svcListener) Accept() (net.Conn, error) {
	for {
		ep, wq, err := l.acceptEndpoint()
		if err != nil {
			return nil, err
		}
		if c := l.svc.admit(ep, wq); c != nil {
			return c, nil
		}
	}
}

func (l *svcListener) acceptEndpoint() (tcpip.Endpoint, *waiter.Queue, error) {
	ep, wq, terr := l.ep.Accept(nil)
	if _, ok := terr.(*tcpip.ErrWouldBlock); ok {
		we, ready := waiter.NewChannelEntry(waiter.ReadableEvents)
		l.wq.EventRegister(&we)
		defer l.wq.EventUnregister(&we)
		for {
			ep, wq, terr = l.ep.Accept(nil)
			if _, ok := terr.(*tcpip.ErrWouldBlock); !ok {
				break
			}
			select {
			case <-l.cancel:
				return nil, nil, net.ErrClosed
			case <-ready:
			}
		}
	}
	if terr != nil {
		select {
		case <-l.cancel:
			return nil, nil, net.ErrClosed
		default:
		}
		return nil, nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: errors.New(terr.String())}
	}
	return ep, wq, nil
}

// Close stops listening; connections already accepted stay.
func (l *svcListener) Close() error {
	l.once.Do(func() {
		close(l.cancel)
		l.ep.Close()
	})
	return nil
}

// Addr returns the address listened on.
func (l *svcListener) Addr() net.Addr {
	a, err := l.ep.GetLocalAddress()
	if err != nil {
		return &net.TCPAddr{}
	}
	return &net.TCPAddr{IP: net.IP(a.Addr.AsSlice()), Port: int(a.Port)}
}

// reset aborts a connection with a RST and frees it at once (no FIN_WAIT
// or TIME_WAIT state kept for a peer we refused).
func reset(ep tcpip.Endpoint) {
	ep.SocketOptions().SetLinger(tcpip.LingerOption{Enabled: true, Timeout: 0})
	ep.Close()
}

// admit counts a new connection against the limits and returns it, or
// resets it and returns nil.
func (svc *service) admit(ep tcpip.Endpoint, wq *waiter.Queue) *svcConn {
	var from netip.Addr
	if ra, err := ep.GetRemoteAddress(); err == nil {
		from, _ = netip.AddrFromSlice(ra.Addr.AsSlice())
	}
	key := sourceKey(from)
	b := svc.budget
	svc.connMu.Lock()
	why := ""
	switch {
	case svc.stopping:
		why = "stopping"
	case len(svc.conns) >= b.MaxConns:
		why = "max_conns"
	case svc.perSource[key] >= b.MaxConnsPerSource:
		why = "max_conns_per_source"
	}
	if why != "" {
		svc.connMu.Unlock()
		if why != "stopping" {
			svc.stats.Refused.Add(1)
			svc.warnRefused(why, from)
		}
		reset(ep)
		return nil
	}
	if svc.holdsData() {
		opts := ep.SocketOptions()
		opts.SetSendBufferSize(svcConnBuffer, true)
		opts.SetReceiveBufferSize(svcConnBuffer, true)
	}
	c := &svcConn{TCPConn: gonet.NewTCPConn(wq, ep), ep: ep, svc: svc, key: key}
	svc.conns[c] = struct{}{}
	svc.perSource[key]++
	svc.connMu.Unlock()
	return c
}

// svcConn is an accepted connection, counted by its service until closed.
type svcConn struct {
	*gonet.TCPConn
	ep   tcpip.Endpoint
	svc  *service
	key  netip.Addr
	once sync.Once
	// The times the read and write deadlines were last set (unix
	// nanoseconds): they are moved only every timeout/svcDeadlineSlop.
	readArmed, writeArmed int64
	// accepted numbers the connection in accept order (routineAccept):
	// iperf3 numbers its streams in the order the client connected them.
	accepted uint64
}

// Close closes the connection and releases its place in the limits.
func (c *svcConn) Close() error {
	var err error
	c.once.Do(func() {
		c.svc.release(c)
		_ = c.SetDeadline(time.Time{}) // stops the deadline timers
		err = c.TCPConn.Close()
	})
	return err
}

// abort resets the connection instead of closing it gracefully.
func (c *svcConn) abort() {
	c.once.Do(func() {
		c.svc.release(c)
		_ = c.SetDeadline(time.Time{})
		reset(c.ep)
	})
}

func (svc *service) release(c *svcConn) {
	svc.connMu.Lock()
	defer svc.connMu.Unlock()
	if _, ok := svc.conns[c]; !ok {
		return
	}
	delete(svc.conns, c)
	if svc.perSource[c.key]--; svc.perSource[c.key] <= 0 {
		delete(svc.perSource, c.key)
	}
}

// armRead moves the read deadline to timeout from now, unless it was
// moved less than timeout/svcDeadlineSlop ago: a connection times out
// between 15/16 of the timeout and the timeout after its last progress,
// and a busy one does not set a timer per read.
func (c *svcConn) armRead(now time.Time, timeout time.Duration) {
	if n := now.UnixNano(); n-c.readArmed >= int64(timeout/svcDeadlineSlop) {
		c.readArmed = n
		_ = c.SetReadDeadline(now.Add(timeout))
	}
}

func (c *svcConn) armWrite(now time.Time, timeout time.Duration) {
	if n := now.UnixNano(); n-c.writeArmed >= int64(timeout/svcDeadlineSlop) {
		c.writeArmed = n
		_ = c.SetWriteDeadline(now.Add(timeout))
	}
}

// routineAccept accepts connections until the listener closes, each served
// by serve on a goroutine of its own that svc.wg tracks (serve calls Done).
func (svc *service) routineAccept(serve func(*svcConn)) {
	defer svc.wg.Done()
	for n := uint64(1); ; n++ {
		nc, err := svc.ln.Accept()
		if err != nil {
			return
		}
		c := nc.(*svcConn)
		c.accepted = n
		svc.connMu.Lock()
		if svc.stopping {
			// Accepted as stop closed the listener: stop has already
			// closed the connections it knows, and waits.
			svc.connMu.Unlock()
			_ = c.Close()
			return
		}
		svc.wg.Add(1)
		svc.connMu.Unlock()
		go serve(c)
	}
}

// routineConn serves one tcp-echo or tcp-discard connection: it reads at
// most svcCopyBuffer at a time and, for echo, writes it all back before
// reading more, so what the client sends and does not take back stays in
// the TCP windows. A connection idle (or stuck writing) for the idle
// timeout is reset; one the client closes is closed.
func (svc *service) routineConn(c *svcConn) {
	defer svc.wg.Done()
	defer c.Close()
	echo := svc.cfg.Kind == "tcp-echo"
	idle := svc.budget.IdleTimeout
	buf := make([]byte, svcCopyBuffer)
	for {
		c.armRead(time.Now(), idle)
		n, err := c.Read(buf)
		if n > 0 && echo {
			c.armWrite(time.Now(), idle)
			if _, werr := c.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err == nil {
			continue
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			svc.stats.TimedOut.Add(1)
			c.abort()
		}
		return
	}
}

// --- UDP ---

// reservedSourcePort reports whether udp-echo leaves a datagram from port
// unanswered: every port below 1024, as xinetd's built-in services do.
// Clients send from ephemeral ports (Linux 32768-60999, IANA 49152-65535,
// never below 1024); what sends from a port below 1024 is a service, and
// a service that answers what it receives (another echo, chargen,
// daytime, time, qotd, discard's peers, DNS and NTP answering garbage)
// turns one spoofed datagram into a loop between it and us. Listing the
// well-known ones (7, 9, 13, 17, 19, 37, as FreeBSD's inetd does) would
// leave every other one open; a loop with a service on a higher port is
// held to rate_per_source by replyLimiter.
func reservedSourcePort(port int) bool { return port < 1024 }

func (svc *service) routineUDPEcho() {
	defer svc.wg.Done()
	buf := make([]byte, 65536)
	rl := newReplyLimiter(svc.budget.RatePerSource, svcMaxSources)
	for {
		n, from, err := svc.pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		src, _ := netip.AddrFromSlice(ua.IP)
		if reservedSourcePort(ua.Port) {
			svc.stats.Reserved.Add(1)
			svc.warnRefused("source port below 1024", src.Unmap())
			continue
		}
		if !rl.allow(sourceKey(src), time.Now()) {
			svc.stats.Limited.Add(1)
			svc.warnRefused("rate_per_source", src.Unmap())
			continue
		}
		if _, err := svc.pc.WriteTo(buf[:n], from); err != nil {
			svc.replyFailed(src.Unmap(), err)
		}
	}
}

// replyFailed accounts for an echo reply to dst that could not be sent:
// with no route to dst it is counted and reported as a SYN with no route
// back is (noroute.go); anything else is logged at debug level.
func (svc *service) replyFailed(dst netip.Addr, err error) {
	if svc.back != nil && isNoRoute(err) {
		svc.back.noReply(dst, "a udp-echo reply", netip.AddrPortFrom(netip.Addr{}, svc.cfg.Port))
		return
	}
	svc.log.Debug("udp-echo reply", "client", dst.String(), "err", err)
}

// replyLimiter is a token bucket per source address (rate tokens a
// second, bursts of rate), in a table of at most max sources. A source
// whose bucket is full again is the same as one never seen, so a full
// table is first swept of those (at most once a second); sources that
// still find no room share one overflow bucket, so that a flood from
// spoofed addresses can neither grow the table nor get more than rate
// replies a second between them. Not safe for concurrent use.
type replyLimiter struct {
	rate      float64
	max       int
	buckets   map[netip.Addr]tokenBucket
	overflow  tokenBucket
	lastSweep time.Time
}

type tokenBucket struct {
	tokens float64
	last   time.Time
}

func newReplyLimiter(rate, max int) *replyLimiter {
	return &replyLimiter{rate: float64(rate), max: max, buckets: map[netip.Addr]tokenBucket{}, overflow: tokenBucket{tokens: float64(rate)}}
}

// level returns b's tokens at now.
func (l *replyLimiter) level(b tokenBucket, now time.Time) float64 {
	if b.last.IsZero() {
		return l.rate
	}
	return min(l.rate, b.tokens+now.Sub(b.last).Seconds()*l.rate)
}

// take spends a token of b if it has one.
func (l *replyLimiter) take(b *tokenBucket, now time.Time) bool {
	t := l.level(*b, now)
	b.last = now
	if t < 1 {
		b.tokens = t
		return false
	}
	b.tokens = t - 1
	return true
}

// allow reports whether src may have a reply now, and spends a token.
func (l *replyLimiter) allow(src netip.Addr, now time.Time) bool {
	b, known := l.buckets[src]
	if !known && len(l.buckets) >= l.max {
		l.sweep(now)
		if len(l.buckets) >= l.max {
			return l.take(&l.overflow, now)
		}
	}
	ok := l.take(&b, now)
	l.buckets[src] = b
	return ok
}

// sweep forgets the sources whose bucket is full again, at most once a
// second.
func (l *replyLimiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Second {
		return
	}
	l.lastSweep = now
	for k, b := range l.buckets {
		if l.level(b, now) >= l.rate {
			delete(l.buckets, k)
		}
	}
}

// sources returns how many sources the table holds.
func (l *replyLimiter) sources() int { return len(l.buckets) }
