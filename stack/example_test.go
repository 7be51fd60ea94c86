package stack_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
	ustack "github.com/ulagg/ulagg/stack"
)

// A userspace router embeds ulagg by creating a lagg endpoint and attaching
// it to its own gVisor stack like any other stack.LinkEndpoint. Here two
// "routers" are cabled with two in-memory wires; with host interfaces the
// ports would come from linkep.Open("afpacket", "eth0", ...).
func Example_embedding() {
	quiet := slog.New(slog.DiscardHandler)
	w0 := linkeptest.NewWire("r1p0", "r2p0", "\x02\x00\x00\x00\x01\x01", "\x02\x00\x00\x00\x02\x01", linkeptest.WireOptions{})
	w1 := linkeptest.NewWire("r1p1", "r2p1", "\x02\x00\x00\x00\x01\x02", "\x02\x00\x00\x00\x02\x02", linkeptest.WireOptions{})

	router := func(name, addr string, ports ...linkep.Port) (*gstack.Stack, *lagg.Lagg, func()) {
		opts := lagg.DefaultOptions(name)
		opts.Proto = "failover"
		opts.Logger = quiet
		l, err := lagg.New(opts)
		if err != nil {
			panic(err)
		}
		for i, p := range ports {
			if err := l.AddPort(p, uint16(1000*(i+1))); err != nil {
				panic(err)
			}
		}
		s, err := ustack.NewNetstack() // or the router's own stack
		if err != nil {
			panic(err)
		}
		if err := ustack.AddInterface(s, 1, name, l, []netip.Prefix{netip.MustParsePrefix(addr)}); err != nil {
			panic(err)
		}
		l.SetAnnouncer(func() { _ = ustack.Announce(s, 1) }) // GARP/NA on failover
		// A one-shot echo server on port 7, listening before the router is used.
		ln, err := gonet.ListenTCP(s, tcpip.FullAddress{Port: 7}, ipv4.ProtocolNumber)
		if err != nil {
			panic(err)
		}
		go func() {
			defer ln.Close()
			if c, err := ln.Accept(); err == nil {
				_, _ = io.Copy(c, c)
				c.Close()
			}
		}()
		return s, l, func() { s.Close(); s.Wait(); l.Close() }
	}
	s1, _, stop1 := router("lagg0", "10.1.0.1/24", w0.A, w1.A)
	defer stop1()
	_, l2, stop2 := router("lagg0b", "10.1.0.2/24", w0.B, w1.B)
	defer stop2()

	w0.SetLinkUp(false) // pull the primary cable: both ends fail over to port 1
	fmt.Println("lagg0b transmits on", l2.Status().TxPort)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	remote := tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 1, 0, 2}), Port: 7}
	c, err := gonet.DialContextTCP(ctx, s1, remote, ipv4.ProtocolNumber)
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()
	_, _ = c.Write([]byte("hello over the backup port"))
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	fmt.Printf("echo: %s\n", buf[:n])
	// Output:
	// lagg0b transmits on r2p1
	// echo: hello over the backup port
}
