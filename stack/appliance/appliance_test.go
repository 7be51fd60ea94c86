package appliance_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	ustack "github.com/ulagg/ulagg/stack"
	"github.com/ulagg/ulagg/stack/appliance"
)

var quiet = slog.New(slog.DiscardHandler)

// bench is an appliance whose ports are in-memory wires, and a peer stack
// with a failover lagg over the far ends of the same wires.
type bench struct {
	a     *appliance.Appliance
	peer  *gstack.Stack
	pl    *lagg.Lagg
	wires map[string]*linkeptest.Wire
}

var benchSeq int

func newBench(t *testing.T, toml string, ports ...string) *bench {
	t.Helper()
	benchSeq++
	b := &bench{wires: map[string]*linkeptest.Wire{}}
	po := lagg.DefaultOptions(fmt.Sprintf("peer%d", benchSeq))
	po.Proto, po.Logger = "failover", quiet
	pl, err := lagg.New(po)
	if err != nil {
		t.Fatal(err)
	}
	b.pl = pl
	for i, name := range ports {
		w := linkeptest.NewWire(name, fmt.Sprintf("%s.peer", name),
			tcpip.LinkAddress([]byte{2, 0, 0, 1, byte(benchSeq), byte(i)}),
			tcpip.LinkAddress([]byte{2, 0, 0, 2, byte(benchSeq), byte(i)}), linkeptest.WireOptions{})
		b.wires[name] = w
		if err := pl.AddPort(w.B, uint16(1000*(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	b.peer, err = ustack.NewNetstack()
	if err != nil {
		t.Fatal(err)
	}
	if err := ustack.AddInterface(b.peer, 1, po.Name, pl, []netip.Prefix{netip.MustParsePrefix("10.9.0.2/24"), netip.MustParsePrefix("fd09::2/64")}); err != nil {
		t.Fatal(err)
	}
	pl.SetAnnouncer(func() { _ = ustack.Announce(b.peer, 1) })
	cfg, err := config.Parse("test.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	b.a, err = appliance.New(cfg, appliance.Options{Logger: quiet, OpenPort: b.open})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.a.Close()
		b.peer.Close()
		b.peer.Wait()
		pl.Close()
	})
	return b
}

func (b *bench) open(p config.Port, _ *slog.Logger) (linkep.Port, error) {
	w := b.wires[p.Name]
	if w == nil {
		return nil, fmt.Errorf("no interface %s", p.Name)
	}
	// A port removed earlier was closed; a fresh end on the same cable
	// stands for reopening the interface.
	return w.A, nil
}

func (b *bench) dial(t *testing.T, addr string, port uint16) *gonet.TCPConn {
	t.Helper()
	ip := netip.MustParseAddr(addr)
	proto := ipv4.ProtocolNumber
	if ip.Is6() {
		proto = ipv6.ProtocolNumber
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := gonet.DialContextTCP(ctx, b.peer, tcpip.FullAddress{Addr: tcpip.AddrFromSlice(ip.AsSlice()), Port: port}, proto)
	if err != nil {
		t.Fatalf("dial %s:%d: %v", addr, port, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

const applianceTOML = `
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
[[service]]
kind = "tcp-echo"
port = 7
[[service]]
kind = "udp-echo"
port = 7
[[service]]
kind = "tcp-discard"
port = 9
[[service]]
kind = "http-status"
port = 80
`

func TestApplianceServices(t *testing.T) {
	b := newBench(t, applianceTOML, "sp0", "sp1")
	for _, addr := range []string{"10.9.0.1", "fd09::1"} {
		t.Run("tcp-echo "+addr, func(t *testing.T) {
			testkit.CheckEcho(t, testkit.GonetDialer(b.peer, netip.AddrPortFrom(netip.MustParseAddr(addr), 7)), bytes.Repeat([]byte("lagg"), 4096))
		})
	}
	t.Run("udp-echo", func(t *testing.T) {
		c, err := gonet.DialUDP(b.peer, nil, &tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 9, 0, 1}), Port: 7}, ipv4.ProtocolNumber)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		got := make([]byte, 100)
		for try := 0; try < 20; try++ { // the first datagram may wait for ARP
			if _, err := c.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(got)
			if err == nil {
				if string(got[:n]) != "ping" {
					t.Fatalf("got %q, want ping", got[:n])
				}
				return
			}
		}
		t.Fatal("no UDP echo")
	})
	t.Run("tcp-discard", func(t *testing.T) {
		c := b.dial(t, "10.9.0.1", 9)
		before := b.a.Lagg("lagg0").Status().Counters.RxBytes
		if _, err := c.Write(make([]byte, 1<<20)); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			rx := b.a.Lagg("lagg0").Status().Counters.RxBytes - before
			if rx >= 1<<20 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lagg received %d bytes, want at least 1 MiB", rx)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	t.Run("http-status", func(t *testing.T) {
		client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return gonet.DialContextTCP(ctx, b.peer, tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 9, 0, 1}), Port: 80}, ipv4.ProtocolNumber)
		}}, Timeout: 10 * time.Second}
		// The health answer; the detailed JSON only with details = true
		// (TestServicesHTTPStatus).
		resp, err := client.Get("http://10.9.0.1/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || string(body) != "ok: 1 laggs up\n" {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})
}

// A reload that only changes port priorities moves the transmit port and
// does not disturb a transfer.
func TestApplianceReloadDuringTransfer(t *testing.T) {
	b := newBench(t, applianceTOML, "sp0", "sp1")
	const total = 8 << 20
	tr := testkit.StartEcho(t, b.dial(t, "10.9.0.1", 7), testkit.TransferOptions{Name: "echo across the reload", Seed: 1, Size: total, Chunk: 32 << 10})
	tr.WaitReceived(t, total/4, 30*time.Second)
	next := strings.Replace(applianceTOML, "priority = 1000", "priority = 3000", 1)
	cfg, err := config.Parse("next.toml", []byte(next))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.a.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	tr.Wait(t, 30*time.Second)
	st := b.a.Lagg("lagg0").Status()
	if st.TxPort != "sp1" || st.Failovers != 1 {
		t.Fatalf("after reload: tx port %q failovers %d, want sp1 and 1", st.TxPort, st.Failovers)
	}
}

// A reload with a broken file leaves the running config serving; Close
// gives the ports their own MTU and MAC back.
func TestApplianceBadReloadAndRestore(t *testing.T) {
	b := newBench(t, strings.Replace(applianceTOML, `proto = "failover"`, "proto = \"failover\"\nmtu = 9000", 1), "sp0", "sp1")
	if _, err := config.Parse("bad.toml", []byte(applianceTOML+"\nbogus = 1\n")); err == nil {
		t.Fatal("a broken file parsed")
	}
	bad := b.a.Config()
	bad.Laggs[0].Ports[1].Name = bad.Laggs[0].Ports[0].Name // duplicate port
	if err := b.a.Reload(bad); err == nil {
		t.Fatal("a config with a duplicate port was applied")
	}
	if got := b.a.Lagg("lagg0").Ports(); len(got) != 2 {
		t.Fatalf("ports after refused reload: %v", got)
	}
	c := b.dial(t, "10.9.0.1", 7)
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := b.wires["sp1"].A.MTU(); m != 9000 {
		t.Fatalf("port MTU %d, want 9000", m)
	}
	b.a.Close()
	for name, w := range b.wires {
		if m := w.A.MTU(); m != 1500 {
			t.Errorf("%s: MTU after close %d, want 1500", name, m)
		}
		if mac := w.A.LinkAddress(); mac[3] != 1 {
			t.Errorf("%s: MAC after close %s, want its own", name, mac)
		}
	}
}
