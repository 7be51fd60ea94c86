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

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// TestLoadBalanceSpread: 48 verified TCP flows from a 2-port loadbalance
// lagg to the kernel host are spread over both ports: each port carries at
// least 25% of the bytes transmitted (per-port TxBytes counters), and every
// flow arrives intact.
func TestLoadBalanceSpread(t *testing.T) {
	const (
		flows   = 48
		perFlow = 4 << 20
	)
	tp := newTopo(t, 2)
	ap := startAppliance(t, laggConfig(config.ProtoLoadBalance, tp.ports...), appOptions{netns: tp.lag})
	pingOK(t, tp.host, 3)

	ln, err := lab.Listen(tp.host, "tcp4", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)

	// The host's side: verify each flow; the first 8 bytes name its seed.
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		got      = map[uint64]int64{}
		errs     []error
		received atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range flows {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var hdr [8]byte
				_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				seed := binary.BigEndian.Uint64(hdr[:])
				n, err := testkit.VerifyStream(c, seed, &received)
				mu.Lock()
				got[seed] = n
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}()
		}
	}()

	before := ap.l.Status()
	start := time.Now()
	var sendWG sync.WaitGroup
	sendErrs := make(chan error, flows)
	for i := range flows {
		sendWG.Add(1)
		go func() {
			defer sendWG.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := gonet.DialContextTCP(ctx, ap.a.Stack(), tcpip.FullAddress{Addr: tcpip.AddrFrom4(hostAddr.As4()), Port: port}, ipv4.ProtocolNumber)
			if err != nil {
				sendErrs <- err
				return
			}
			defer c.Close()
			seed := uint64(1000 + i)
			var hdr [8]byte
			binary.BigEndian.PutUint64(hdr[:], seed)
			if _, err := c.Write(hdr[:]); err != nil {
				sendErrs <- err
				return
			}
			if err := testkit.SendStream(c, seed, perFlow); err != nil {
				sendErrs <- err
			}
		}()
	}
	sendWG.Wait()
	close(sendErrs)
	for err := range sendErrs {
		t.Errorf("flow: %v", err)
	}
	if !testkit.Poll(30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got)+len(errs) >= flows
	}) {
		t.Errorf("only %d flows finished on the host", len(got))
	}
	elapsed := time.Since(start)
	ln.Close()
	wg.Wait()
	for _, err := range errs {
		t.Errorf("host side: %v", err)
	}
	for seed, n := range got {
		if n != perFlow {
			t.Errorf("flow %d: %d bytes arrived, want %d", seed, n, perFlow)
		}
	}

	after := ap.l.Status()
	var total uint64
	share := map[string]uint64{}
	for _, p := range after.Ports {
		share[p.Name] = p.Counters.TxBytes - before.Port(p.Name).Counters.TxBytes
		total += share[p.Name]
	}
	t.Logf("measure: loadbalance %d flows × %d MiB ulagg→kernel: %.0f MB/s; tx %s %.1f%%, %s %.1f%%",
		flows, perFlow>>20, float64(received.Load())/1e6/elapsed.Seconds(),
		tp.ports[0], 100*float64(share[tp.ports[0]])/float64(max(total, 1)),
		tp.ports[1], 100*float64(share[tp.ports[1]])/float64(max(total, 1)))
	if total < flows*perFlow {
		t.Errorf("the ports transmitted %d bytes in all, less than the %d sent", total, flows*perFlow)
	}
	for _, p := range tp.ports {
		if share[p]*4 < total {
			t.Errorf("port %s transmitted %d of %d bytes (%.1f%%), want ≥ 25%%", p, share[p], total, 100*float64(share[p])/float64(total))
		}
	}
}
