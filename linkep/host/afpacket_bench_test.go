package host_test

import (
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/safchain/ethtool"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"

	"github.com/ulagg/ulagg/linkep/host"
)

// BenchmarkAFPacketRX compares kernel→gVisor TCP bulk throughput over a veth
// pair through (a) gVisor's fdbased endpoint on an AF_PACKET socket, set up
// as the integration harness's plain configuration (RecvMMsg, RX checksum
// offload, PACKET_VNET_HDR with 64 KiB GSO, PACKET_IGNORE_OUTGOING, 4 MiB
// buffers, one processor), and (b) an AFPacket port. Both use the
// interface's own MAC and a stack tuned as ulagg's (SACK on, RACK off). The
// two are measured interleaved, ULAGG_BENCH_ROUNDS times (3) for
// ULAGG_BENCH_CELL each (3s); ULAGG_BENCH_TXOFF=1 turns the peer's TX
// offloads off (MTU-sized frames); ULAGG_BENCH_ONLY=fdbased or afpacket
// measures one of them (for profiles). b.N is ignored, run with -benchtime 1x:
//
//	go test -run '^$' -bench AFPacketRX -benchtime 1x ./linkep/host/
func BenchmarkAFPacketRX(b *testing.B) {
	cell, rounds := 3*time.Second, 3
	if v := os.Getenv("ULAGG_BENCH_CELL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		cell = d
	}
	if v := os.Getenv("ULAGG_BENCH_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		rounds = n
	}
	e := newAFEnv(b)
	if err := e.port.nl.LinkSetUp(e.port.link(b, e.pname)); err != nil {
		b.Fatal(err)
	}
	if os.Getenv("ULAGG_BENCH_TXOFF") != "" {
		// MTU-sized frames with full checksums, as `ethtool -K tx off`.
		htDo(b, e.peer, func() error {
			et, err := ethtool.NewEthtool()
			if err != nil {
				return err
			}
			defer et.Close()
			return et.Change(e.kname, map[string]bool{
				"tx-checksum-ip-generic": false, "tx-tcp-segmentation": false,
				"tx-tcp6-segmentation": false, "tx-generic-segmentation": false,
			})
		})
		b.Log("peer: tx checksum offload, TSO and GSO off")
	}
	var fd, af []float64
	for round := range rounds {
		// Alternate which goes first.
		order := []bool{false, true}
		if round%2 == 1 {
			order = []bool{true, false}
		}
		for _, ours := range order {
			if only := os.Getenv("ULAGG_BENCH_ONLY"); only != "" && (only == "afpacket") != ours {
				continue
			}
			var mbps float64
			if ours {
				mbps = benchCell(b, e, benchAFPacket(b, e), cell)
				af = append(af, mbps)
				fmt.Fprintf(os.Stderr, "round %d: (b) AFPacket  %6.0f MB/s\n", round, mbps)
			} else {
				mbps = benchCell(b, e, benchFdbased(b, e), cell)
				fd = append(fd, mbps)
				fmt.Fprintf(os.Stderr, "round %d: (a) fdbased   %6.0f MB/s\n", round, mbps)
			}
		}
	}
	if len(fd) == 0 || len(af) == 0 {
		b.Logf("kernel→gVisor MB/s (10^6 B/s), %v per cell: fdbased %v, AFPacket %v", cell, benchFmt(fd), benchFmt(af))
		return
	}
	med := func(v []float64) float64 {
		v = slices.Clone(v)
		sort.Float64s(v)
		return v[len(v)/2]
	}
	b.Logf("kernel→gVisor MB/s (10^6 B/s), %v per cell: fdbased %v, AFPacket %v", cell, benchFmt(fd), benchFmt(af))
	b.Logf("median fdbased %.0f, AFPacket %.0f, ratio %.2f; best fdbased %.0f, AFPacket %.0f, ratio %.2f",
		med(fd), med(af), med(af)/med(fd), slices.Max(fd), slices.Max(af), slices.Max(af)/slices.Max(fd))
	b.ReportMetric(med(fd), "fdbased-MB/s")
	b.ReportMetric(med(af), "afpacket-MB/s")
	b.ReportMetric(med(af)/med(fd), "ratio")
}

func benchFmt(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 0, 64)
	}
	return "[" + strings.Join(s, " ") + "]"
}

// benchTarget is a gVisor stack at afStackIP on some endpoint.
type benchTarget struct {
	s     *stack.Stack
	close func()
}

func benchStack(b *testing.B, ep stack.LinkEndpoint, cleanup func()) benchTarget {
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, arp.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol},
		HandleLocal:        true,
	})
	sack := tcpip.TCPSACKEnabled(true)
	recovery := tcpip.TCPRecovery(0)
	for _, opt := range []tcpip.SettableTransportProtocolOption{&sack, &recovery} {
		if err := s.SetTransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.CreateNIC(1, ep); err != nil {
		b.Fatal(err)
	}
	addr := tcpip.AddressWithPrefix{Address: tcpip.AddrFrom4(afStackIP), PrefixLen: 24}
	if err := s.AddProtocolAddress(1, tcpip.ProtocolAddress{Protocol: ipv4.ProtocolNumber, AddressWithPrefix: addr}, stack.AddressProperties{}); err != nil {
		b.Fatal(err)
	}
	s.SetRouteTable([]tcpip.Route{{Destination: addr.Subnet(), NIC: 1}})
	return benchTarget{s, func() {
		// Detach before the stack's teardown (see htStack).
		ep.Attach(nil)
		s.Close()
		s.Wait()
		cleanup()
	}}
}

func benchAFPacket(b *testing.B, e *afEnv) benchTarget {
	p, err := host.OpenAFPacket(e.pname, host.AFPacketOptions{Netns: e.port.name})
	if err != nil {
		b.Fatal(err)
	}
	return benchStack(b, p, p.Close)
}

// benchFdbased is the integration harness's plain configuration (a).
func benchFdbased(b *testing.B, e *afEnv) benchTarget {
	li := e.port.link(b, e.pname).Attrs()
	var fd int
	htDo(b, e.port, func() (err error) {
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	gso := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1) == nil
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		b.Fatal(err)
	}
	for _, o := range []int{unix.SO_RCVBUFFORCE, unix.SO_SNDBUFFORCE} {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o, 4<<20); err != nil {
			b.Fatal(err)
		}
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: 0x0300 /* htons(ETH_P_ALL) */, Ifindex: li.Index}); err != nil {
		b.Fatal(err)
	}
	opts := &fdbased.Options{
		FDs:                  []int{fd},
		MTU:                  uint32(li.MTU),
		EthernetHeader:       true,
		Address:              tcpip.LinkAddress(li.HardwareAddr),
		PacketDispatchMode:   fdbased.RecvMMsg,
		RXChecksumOffload:    true,
		ProcessorsPerChannel: 1,
		PreConfigured:        true,
		IsPacketSocket:       []bool{true},
	}
	if gso {
		opts.GSOMaxSize = 1 << 16
	}
	// fdbased.New leaks its dispatchers' eventfds at this gVisor version.
	before := benchEventFDs()
	ep, err := fdbased.New(opts)
	var leaked []int
	for _, efd := range benchEventFDs() {
		if !slices.Contains(before, efd) {
			leaked = append(leaked, efd)
		}
	}
	if err != nil {
		b.Fatal(err)
	}
	return benchStack(b, ep, func() {
		for _, efd := range leaked {
			unix.Close(efd)
		}
		unix.Close(fd)
	})
}

func benchEventFDs() []int {
	var fds []int
	for _, f := range htFDs() {
		name, target, _ := strings.Cut(f, "=")
		if target != "anon_inode:[eventfd]" {
			continue
		}
		if fd, err := strconv.Atoi(name); err == nil {
			fds = append(fds, fd)
		}
	}
	return fds
}

// benchCell streams from a kernel TCP socket in the peer namespace to a
// gVisor listener for d after a warm-up and returns the receiver's MB/s.
func benchCell(b *testing.B, e *afEnv, tg benchTarget, d time.Duration) float64 {
	defer tg.close()
	ln, err := gonet.ListenTCP(tg.s, tcpip.FullAddress{Port: 5001}, ipv4.ProtocolNumber)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var (
		received atomic.Int64
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	accepted := make(chan net.Conn, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
		buf := make([]byte, 256<<10)
		for {
			n, err := c.Read(buf)
			received.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	var kc net.Conn
	htDo(b, e.peer, func() (err error) {
		kc, err = net.DialTimeout("tcp4", net.JoinHostPort(net.IP(afStackIP[:]).String(), "5001"), 10*time.Second)
		return err
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 256<<10)
		for !stop.Load() {
			_ = kc.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := kc.Write(buf); err != nil {
				return
			}
		}
	}()
	gc := <-accepted
	time.Sleep(300 * time.Millisecond) // slow start
	b0, t0 := received.Load(), time.Now()
	time.Sleep(d)
	b1, t1 := received.Load(), time.Now()
	stop.Store(true)
	kc.Close()
	if gc != nil {
		gc.Close()
	}
	wg.Wait()
	return float64(b1-b0) / 1e6 / t1.Sub(t0).Seconds()
}
