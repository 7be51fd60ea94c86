package integration

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// Seeded TCP flows from the appliance to the kernel host, verified byte
// for byte on the host: what the distribution tests push through a lagg.
// Each flow's first 8 bytes name its seed (testkit.SendStream).

// flowSink is the host's side: it accepts the flows and verifies each.
type flowSink struct {
	ln       net.Listener
	port     uint16
	wg       sync.WaitGroup
	received atomic.Int64 // bytes verified so far, all flows together

	mu sync.Mutex
	// +checklocks:mu
	got map[uint64]int64 // seed → bytes verified
	// +checklocks:mu
	errs []error
}

// acceptFlows listens on hostIP in ns and verifies up to flows flows,
// each of which must name its seed within readTimeout.
func acceptFlows(t testing.TB, ns string, flows int, readTimeout time.Duration) *flowSink {
	t.Helper()
	ln, err := lab.Listen(ns, "tcp4", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	s := &flowSink{ln: ln, port: uint16(ln.Addr().(*net.TCPAddr).Port), got: map[uint64]int64{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for range flows {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				var hdr [8]byte
				_ = c.SetReadDeadline(time.Now().Add(readTimeout))
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					s.mu.Lock()
					s.errs = append(s.errs, err)
					s.mu.Unlock()
					return
				}
				seed := binary.BigEndian.Uint64(hdr[:])
				n, err := testkit.VerifyStream(c, seed, &s.received)
				s.mu.Lock()
				s.got[seed] = n
				if err != nil {
					s.errs = append(s.errs, err)
				}
				s.mu.Unlock()
			}()
		}
	}()
	return s
}

// finish waits up to timeout for the flows to end, stops accepting and
// fails t unless each flow of seed base+i (i < flows) arrived whole,
// perFlow bytes.
func (s *flowSink) finish(t testing.TB, flows int, base uint64, perFlow int64, timeout time.Duration) {
	t.Helper()
	if !testkit.Poll(timeout, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.got)+len(s.errs) >= flows
	}) {
		s.mu.Lock()
		t.Errorf("only %d flows finished on the host", len(s.got))
		s.mu.Unlock()
	}
	_ = s.ln.Close()
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, err := range s.errs {
		t.Errorf("host side: %v", err)
	}
	for i := range uint64(flows) {
		if n := s.got[base+i]; n != perFlow {
			t.Errorf("flow %d: %d bytes verified, want %d", i, n, perFlow)
		}
	}
}

// sendFlows starts flows flows from ap's stack to the host's port, flow i
// sending perFlow bytes of seed base+i. wait waits for them all and fails
// t for each that could not send everything.
func sendFlows(ap *app, port uint16, flows int, base uint64, perFlow int64) (wait func(t testing.TB)) {
	var wg sync.WaitGroup
	errs := make(chan error, flows)
	for i := range uint64(flows) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := gonet.DialContextTCP(ctx, ap.a.Stack(), tcpip.FullAddress{Addr: tcpip.AddrFrom4(hostAddr.As4()), Port: port}, ipv4.ProtocolNumber)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			seed := base + i
			var hdr [8]byte
			binary.BigEndian.PutUint64(hdr[:], seed)
			if _, err := c.Write(hdr[:]); err != nil {
				errs <- err
				return
			}
			if err := testkit.SendStream(c, seed, perFlow); err != nil {
				errs <- err
			}
		}()
	}
	return func(t testing.TB) {
		t.Helper()
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("flow: %v", err)
		}
	}
}
