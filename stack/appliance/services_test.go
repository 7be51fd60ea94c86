package appliance_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/stack/appliance"
)

// servicesTOML is applianceTOML's lagg, a lagg1 without addresses (for
// http-status to see a lagg go down), and services whose limits are small
// enough to reach in a test.
const servicesTOML = `
[[lagg]]
name = "lagg0"
proto = "failover"
addresses = ["10.9.0.1/24", "fd09::1/64"]
[[lagg.port]]
name = "sp0"
kind = "wire"
priority = 1000
[[lagg.port]]
name = "sp1"
kind = "wire"
priority = 2000
[[lagg]]
name = "lagg1"
proto = "failover"
[[lagg.port]]
name = "sp2"
kind = "wire"
[[service]]
kind = "tcp-echo"
port = 7
max_conns = 3
max_conns_per_source = 2
[[service]]
kind = "udp-echo"
port = 7
[[service]]
kind = "tcp-discard"
port = 9
idle_timeout_s = 1
[[service]]
kind = "http-status"
port = 80
[[service]]
kind = "http-status"
port = 8080
details = true
`

var applianceAddr = tcpip.AddrFrom4([4]byte{10, 9, 0, 1})

// udpBounces faces the appliance's udp-echo with an echo service on the
// peer's port from, starts them off with one datagram and returns how many
// datagrams the peer's echo received in d.
func udpBounces(t *testing.T, b *bench, from uint16, d time.Duration) int64 {
	t.Helper()
	pc, err := gonet.DialUDP(b.peer, &tcpip.FullAddress{Port: from}, nil, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var n atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			k, addr, err := pc.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
			n.Add(1)
			_, _ = pc.WriteTo(buf[:k], addr)
		}
	}()
	to := &net.UDPAddr{IP: net.IPv4(10, 9, 0, 1), Port: 7}
	if _, err := pc.WriteTo([]byte("bounce"), to); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	pc.Close()
	<-done
	return n.Load()
}

// TestServicesUDPEchoLoop: another echo service facing udp-echo gets no
// answer from a reserved port, and a bounded number from any other one.
// Before the fix one datagram bounced as fast as the two stacks could turn
// it round (tens of thousands a second).
func TestServicesUDPEchoLoop(t *testing.T) {
	b := newBench(t, servicesTOML, "sp0", "sp1", "sp2")
	// Resolve the neighbours first, so that the first datagram is not
	// lost to ARP.
	if err := testkit.Ping(b.peer, netip.MustParseAddr("10.9.0.1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := udpBounces(t, b, 7, time.Second); n != 0 {
		t.Errorf("peer echo on port 7: %d datagrams came back, want none", n)
	}
	if n := udpBounces(t, b, 19, 200*time.Millisecond); n != 0 {
		t.Errorf("peer chargen's port 19: %d datagrams came back, want none", n)
	}
	n := udpBounces(t, b, 40007, 2*time.Second)
	if n > config.DefaultRatePerSource*3 {
		t.Errorf("peer echo on port 40007: %d datagrams bounced in 2 s, want at most %d", n, config.DefaultRatePerSource*3)
	}
	t.Logf("measure: udp-echo against a peer echo on port 40007: %d bounces in 2 s", n)
	st := b.a.ServiceStats(config.Service{Kind: "udp-echo", Port: 7})
	if st == nil || st.Reserved.Load() < 2 || st.Limited.Load() < 1 {
		t.Errorf("stats: %+v, want reserved-port and rate-limited datagrams counted", st)
	}
}

// TestServicesUDPRateLimit: a burst of 1000 datagrams from one client gets
// at most the burst (rate_per_source) answered, and the client is answered
// again a second later.
func TestServicesUDPRateLimit(t *testing.T) {
	b := newBench(t, servicesTOML, "sp0", "sp1", "sp2")
	if err := testkit.Ping(b.peer, netip.MustParseAddr("10.9.0.1"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	pc, err := gonet.DialUDP(b.peer, nil, &tcpip.FullAddress{Addr: applianceAddr, Port: 7}, ipv4.ProtocolNumber)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 64)
		for {
			if _, err := pc.Read(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	for range 1000 {
		if _, err := pc.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	burst := got.Load()
	if burst > config.DefaultRatePerSource+60 || burst < 10 {
		t.Errorf("1000 datagrams at once: %d answered, want about %d", burst, config.DefaultRatePerSource)
	}
	time.Sleep(time.Second)
	if _, err := pc.Write([]byte("again")); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 2*time.Second, "an answer a second later", func() bool { return got.Load() > burst })
	pc.Close()
	<-done
}

// TestServicesTCPLimits: tcp-echo with max_conns = 3 and
// max_conns_per_source = 2 resets the third connection from the peer,
// serves the first two, and takes a new one once one of them closed.
func TestServicesTCPLimits(t *testing.T) {
	b := newBench(t, servicesTOML, "sp0", "sp1", "sp2")
	echoOnce := func(c net.Conn) error {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		_, err := io.ReadFull(c, buf)
		return err
	}
	c1, c2 := b.dial(t, "10.9.0.1", 7), b.dial(t, "10.9.0.1", 7)
	for i, c := range []net.Conn{c1, c2} {
		if err := echoOnce(c); err != nil {
			t.Fatalf("connection %d: %v", i+1, err)
		}
	}
	if c3, err := dialEcho(b); err == nil {
		defer c3.Close()
		if err := echoOnce(c3); err == nil {
			t.Fatal("a third connection from one address was served; max_conns_per_source is 2")
		}
	}
	st := b.a.ServiceStats(config.Service{Kind: "tcp-echo", Port: 7, MaxConns: 3, MaxConnsPerSource: 2})
	if st == nil || st.Refused.Load() != 1 {
		t.Fatalf("stats %+v, want 1 refused", st)
	}
	c1.Close()
	testkit.WaitFor(t, 5*time.Second, "a place free again", func() bool {
		c, err := dialEcho(b)
		if err != nil {
			return false
		}
		defer c.Close()
		return echoOnce(c) == nil
	})
}

// TestServicesIdleTimeout: tcp-discard with idle_timeout_s = 1 resets a
// connection that sends nothing, and keeps one that does.
func TestServicesIdleTimeout(t *testing.T) {
	b := newBench(t, servicesTOML, "sp0", "sp1", "sp2")
	idle := b.dial(t, "10.9.0.1", 9)
	busy := b.dial(t, "10.9.0.1", 9)
	start := time.Now()
	for time.Since(start) < 2500*time.Millisecond {
		if _, err := busy.Write([]byte("still here")); err != nil {
			t.Fatalf("the busy connection: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := idle.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("the idle connection: read %v, want it closed by the appliance", err)
	}
	if _, err := busy.Write([]byte("x")); err != nil {
		t.Fatalf("the busy connection after 2.5 s: %v", err)
	}
	st := b.a.ServiceStats(config.Service{Kind: "tcp-discard", Port: 9, IdleTimeout: time.Second})
	if st == nil || st.TimedOut.Load() != 1 {
		t.Fatalf("stats %+v, want 1 timed out", st)
	}
}

// TestServicesEchoBounded: a tcp-echo client that sends and never reads is
// held back by the windows: the appliance takes no more than its bounded
// buffers (and the peer's own) before the client's writes block. Before,
// echo buffered megabytes per connection (1 MiB send and receive buffers,
// auto-tuned up to 4 MiB).
func TestServicesEchoBounded(t *testing.T) {
	b := newBench(t, servicesTOML, "sp0", "sp1", "sp2")
	c := b.dial(t, "10.9.0.1", 7)
	chunk := make([]byte, 16<<10)
	var sent int
	for {
		_ = c.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Write(chunk)
		sent += n
		if err != nil {
			break
		}
		if sent > 64<<20 {
			t.Fatal("64 MiB sent to an echo whose answers nobody reads")
		}
	}
	// What the peer's own stack holds (its send and receive buffers,
	// about 1.6 MiB here) plus the appliance's 2 x 64 KiB and its copy
	// buffer; before, the appliance's own buffers took it to 5.5 MiB.
	t.Logf("measure: tcp-echo took %d KiB from a client that does not read before its writes blocked", sent>>10)
	if sent > 3<<20 {
		t.Errorf("tcp-echo took %d KiB from a client that does not read", sent>>10)
	}
}

// TestServicesHTTPStatus checks the health answers, the refusal of other
// paths and methods, and the detailed JSON of a details = true service.
func TestServicesHTTPStatus(t *testing.T) {
	b := newBench(t, servicesTOML, "sp0", "sp1", "sp2")
	client := func(port uint16) *http.Client {
		return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return gonet.DialContextTCP(ctx, b.peer, tcpip.FullAddress{Addr: applianceAddr, Port: port}, ipv4.ProtocolNumber)
		}}, Timeout: 10 * time.Second}
	}
	get := func(c *http.Client, method, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://10.9.0.1"+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	plain := client(80)
	for _, c := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/healthz", 200, "ok: 2 laggs up\n"},
		{"GET", "/healthz/lagg0", 200, "ok: lagg0 up\n"},
		{"GET", "/healthz/lagg9", 404, "no such lagg\n"},
		{"GET", "/", 404, "not found\n"},
		{"GET", "/status", 404, "not found\n"},
		{"POST", "/healthz", 405, "method not allowed\n"},
	} {
		code, body := get(plain, c.method, c.path)
		if code != c.code || body != c.body {
			t.Errorf("%s %s: got %d %q, want %d %q", c.method, c.path, code, body, c.code, c.body)
		}
		if strings.Contains(body, "02:") {
			t.Errorf("%s %s: a MAC address in %q", c.method, c.path, body)
		}
	}
	// lagg1's only port down: lagg1 is down, lagg0 still up.
	b.wires["sp2"].SetLinkUp(false)
	testkit.WaitFor(t, 5*time.Second, "lagg1 down", func() bool { return !b.a.Lagg("lagg1").Status().Up })
	for path, want := range map[string]string{
		"/healthz":       "503 down: 1 of 2 laggs\n",
		"/healthz/lagg1": "503 down: lagg1\n",
		"/healthz/lagg0": "200 ok: lagg0 up\n",
	} {
		if code, body := get(plain, "GET", path); fmt.Sprintf("%d %s", code, body) != want {
			t.Errorf("%s with lagg1 down: %d %q, want %q", path, code, body, want)
		}
	}

	code, body := get(client(8080), "GET", "/")
	var st []appliance.LaggJSON
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != 200 {
		t.Fatalf("details: %d %q (%v)", code, body, err)
	}
	if len(st) != 2 || st[0].Name != "lagg0" || len(st[0].Ports) != 2 || st[0].Ports[0].Flags.String() != "0x1c<ACTIVE,COLLECTING,DISTRIBUTING>" {
		t.Fatalf("details: %+v", st)
	}
}

// dialEcho connects to tcp-echo from the peer; a connection the appliance
// resets at once may fail here already.
func dialEcho(b *bench) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return gonet.DialContextTCP(ctx, b.peer, tcpip.FullAddress{Addr: applianceAddr, Port: 7}, ipv4.ProtocolNumber)
}
