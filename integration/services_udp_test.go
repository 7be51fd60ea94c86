package integration

import (
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/lab"
)

// TestServicesUDPEchoLoop faces the appliance's udp-echo with another echo
// service, a kernel socket in the host namespace that sends back whatever
// it receives, and starts them off with one datagram. Counted is what the
// kernel's echo receives in loopFor: before ulagg refused to answer
// reserved source ports and rate-limited replies per source, one
// datagram bounced for ever, as fast as the two could turn it round.
//
//	go test -count=1 -v -run TestServicesUDPEchoLoop ./integration/ 2>&1 | grep measure:
func TestServicesUDPEchoLoop(t *testing.T) {
	const loopFor = 5 * time.Second
	r := newBudgetRig(t)
	for _, c := range []struct {
		name string
		port int
		max  int64
	}{
		// A well-known service port (echo, as another inetd would have
		// it): never answered.
		{"peer echo on port 7", 7, 0},
		// Any other port: the per-source rate limit bounds the loop to
		// the burst plus the rate for loopFor (100 + 100/s by default).
		{"peer echo on port 40007", 40007, 100 + 100*int64(loopFor/time.Second) + 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			pc, err := lab.ListenPacket(r.tp.host, "udp4", net.JoinHostPort(hostIP, strconv.Itoa(c.port)))
			if err != nil {
				t.Fatal(err)
			}
			defer pc.Close()
			var bounces atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				buf := make([]byte, 2048)
				for {
					n, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					bounces.Add(1)
					_, _ = pc.WriteTo(buf[:n], from)
				}
			}()
			to := &net.UDPAddr{IP: net.ParseIP(laggIP), Port: echoPort}
			if _, err := pc.WriteTo([]byte("one datagram"), to); err != nil {
				t.Fatal(err)
			}
			time.Sleep(loopFor)
			pc.Close()
			<-done
			n := bounces.Load()
			t.Logf("measure: udp-echo loop with a kernel echo on port %d: %d datagrams came back in %v", c.port, n, loopFor)
			if n > c.max {
				t.Errorf("%d datagrams bounced in %v, want at most %d", n, loopFor, c.max)
			}
		})
	}
	// The service still answers an ordinary client.
	pc, err := lab.ListenPacket(r.tp.host, "udp4", net.JoinHostPort(legitIP, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	buf := make([]byte, 64)
	for try := 0; ; try++ {
		if _, err := pc.WriteTo([]byte("hello"), &net.UDPAddr{IP: net.ParseIP(laggIP), Port: echoPort}); err != nil {
			t.Fatal(err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, _, err := pc.ReadFrom(buf)
		if err == nil && string(buf[:n]) == "hello" {
			break
		}
		if try == 20 {
			t.Fatalf("no echo for an ordinary client: %v", err)
		}
	}
}
