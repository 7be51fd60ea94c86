package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/stack/appliance"
)

func init() {
	commands = append(commands, command{"demo", "[-v] [--log-format text|json]", "self-contained demo in throwaway namespaces (root)", cmdDemo})
}

// The demo's topology: a kernel host whose bridge has two veth links to the
// lagg's two ports. All of it lives in two namespaces the demo makes.
const (
	demoPrefix = "ulaggdemo"
	demoHostIP = "10.200.0.1"
	demoLaggIP = "10.200.0.2"
	demoPort0  = "ulaggdemo0"
	demoPort1  = "ulaggdemo1"

	demoUpDelay = 1200 * time.Millisecond
)

type demo struct {
	out  io.Writer
	lab  *lab.Lab
	host string // namespace of the kernel host
	lns  string // namespace of the lagg's ports
	a    *appliance.Appliance
	l    *lagg.Lagg
	ctx  context.Context
}

func cmdDemo(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	verbose := fs.Bool("v", false, "show the appliance's log")
	logFormat := fs.String("log-format", "text", "log `FORMAT`: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logLevel := "warn"
	if *verbose {
		logLevel = "info"
	}
	log, err := newLogger(stderr, logLevel, *logFormat)
	if err != nil {
		return err
	}

	lb, err := lab.New(demoPrefix)
	if err != nil {
		return fmt.Errorf("the demo needs root and iproute2: %w", err)
	}
	d := &demo{out: stdout, lab: lb, ctx: ctx}
	defer func() {
		if d.a != nil {
			d.a.Close()
		}
		if err := lb.Close(); err != nil {
			fmt.Fprintf(stderr, "cleanup: %v\n", err)
		} else {
			fmt.Fprintf(stdout, "\nCleaned up: namespaces %s-host and %s-lag and their interfaces are gone.\n", demoPrefix, demoPrefix)
		}
	}()
	if err := d.run(log); err != nil {
		if ctx.Err() != nil {
			return errors.New("interrupted")
		}
		return err
	}
	return nil
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run(log *slog.Logger) error {
	d.say("ulagg demo: lagg(4) in userspace, against the Linux kernel's own stack")
	d.say("protocols in this build: %s\n", strings.Join(lagg.ProtocolNames(), ", "))
	if err := d.topology(); err != nil {
		return err
	}
	if err := d.start(log); err != nil {
		return err
	}
	steps := []struct {
		title string
		fn    func() error
	}{
		{"1. ping the lagg address from the kernel host", d.ping},
		{"2. TCP echo", d.echo},
		{"3. pull the primary port during a transfer", d.failover},
		{"4. the primary port comes back and pre-empts", d.preempt},
		{"5. loadbalance: flows spread over both ports", d.loadbalance},
		{"6. roundrobin: one flow over both ports", d.roundrobin},
		{"7. silent failure, carrier up: the ARP link monitor catches it", d.silentFailure}, // demo_monitor.go
	}
	for _, s := range steps {
		if d.ctx.Err() != nil {
			return d.ctx.Err()
		}
		d.say("\n%s", s.title)
		if err := s.fn(); err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
	}
	d.say("\nDone: every step passed.")
	return nil
}

func (d *demo) topology() error {
	var err error
	if d.host, err = d.lab.AddNS("host"); err != nil {
		return err
	}
	if d.lns, err = d.lab.AddNS("lag"); err != nil {
		return err
	}
	for i, p := range []string{demoPort0, demoPort1} {
		// Both ends get the same ifindex, so Linux reports the far
		// end's carrier changes up to a second late, as for a physical
		// NIC: step 3 pulls a realistic cable.
		if err := d.lab.NICVeth(p, d.lns, demoFarEnd(i), d.host, 100+i); err != nil {
			return err
		}
	}
	if err := d.lab.Bridge(d.host, "ulaggdemobr", demoHostIP+"/24", "ulaggdemoh0", "ulaggdemoh1"); err != nil {
		return err
	}
	d.say("Topology (made for this run, deleted at the end):")
	d.say("  netns %s: kernel host %s on bridge ulaggdemobr over ulaggdemoh0, ulaggdemoh1", d.host, demoHostIP)
	d.say("  netns %s: ports %s (pri 1000) and %s (pri 2000), the veth peers, no IP", d.lns, demoPort0, demoPort1)
	d.say("  ulagg (this process): lagg0 failover over both ports, %s/24 in its own gVisor stack", demoLaggIP)
	return nil
}

func (d *demo) start(log *slog.Logger) error {
	cfg := config.Default()
	lc := config.NewLagg("lagg0")
	lc.Proto = config.ProtoFailover
	lc.Addresses = []netip.Prefix{netip.MustParsePrefix(demoLaggIP + "/24")}
	lc.Ports = []config.Port{
		{Name: demoPort0, Kind: "afpacket", Priority: 1000},
		{Name: demoPort1, Kind: "afpacket", Priority: 2000},
	}
	// A switch port whose link returns forwards only once its own link
	// handling ran (the host's bridge: Linux's link watcher, up to a
	// second): up_delay keeps the returning port out until then, as
	// bonding's updelay does.
	lc.UpDelay = demoUpDelay
	cfg.Laggs = []config.Lagg{lc}
	// The failover steps probe udp-echo 1,000 times a second from one host:
	// above the default per-source reply rate, which guards real networks.
	cfg.Services = []config.Service{{Kind: "tcp-echo", Port: 7}, {Kind: "udp-echo", Port: 7, RatePerSource: 5000}, {Kind: "tcp-discard", Port: 9}, {Kind: "iperf3", Port: config.DefaultIperf3Port}}
	open := func(p config.Port, log *slog.Logger) (linkep.Port, error) {
		return linkep.Open(p.Kind, p.Name, linkep.OpenOptions{Netns: d.lns, SpeedMbps: p.SpeedMbps, Logger: log})
	}
	a, err := appliance.New(cfg, appliance.Options{Logger: log, OpenPort: open})
	if err != nil {
		return err
	}
	d.a, d.l = a, a.Lagg("lagg0")
	return d.waitFor(5*time.Second, "lagg0 up", func() bool { return d.l.Status().Up })
}

func (d *demo) waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v", what, timeout)
		}
		if d.ctx.Err() != nil {
			return d.ctx.Err()
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

func (d *demo) ping() error {
	r, err := lab.Ping(d.host, netip.MustParseAddr(demoLaggIP), 5, 100*time.Millisecond, time.Second)
	if err != nil {
		return err
	}
	if r.Received == 0 {
		return fmt.Errorf("no reply to %d pings", r.Sent)
	}
	sort.Slice(r.RTTs, func(i, j int) bool { return r.RTTs[i] < r.RTTs[j] })
	d.say("   %d/%d replies from %s, rtt min %v median %v max %v", r.Received, r.Sent, demoLaggIP,
		r.RTTs[0].Round(time.Microsecond), r.RTTs[len(r.RTTs)/2].Round(time.Microsecond), r.RTTs[len(r.RTTs)-1].Round(time.Microsecond))
	return nil
}

func (d *demo) echo() error {
	c, err := lab.Dial(d.host, "tcp4", demoLaggIP+":7")
	if err != nil {
		return err
	}
	defer c.Close()
	msg := make([]byte, 256<<10)
	_, _ = rand.Read(msg)
	go func() { _, _ = c.Write(msg) }()
	got := make([]byte, len(msg))
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("the echoed bytes differ")
	}
	d.say("   %d KiB sent to %s:7 came back identical", len(msg)>>10, demoLaggIP)
	return nil
}

// prober sends a numbered UDP datagram to the lagg's echo service every
// millisecond and records which came back, to show what a failover costs
// a live flow.
type prober struct {
	pc       net.PacketConn
	sent     atomic.Uint32
	mu       sync.Mutex
	got      map[uint32]time.Time
	stopSend chan struct{}
	wg       sync.WaitGroup
}

func (d *demo) startProber() (*prober, error) {
	pc, err := lab.ListenPacket(d.host, "udp4", ":0")
	if err != nil {
		return nil, err
	}
	p := &prober{pc: pc, got: map[uint32]time.Time{}, stopSend: make(chan struct{})}
	dst := &net.UDPAddr{IP: net.ParseIP(demoLaggIP), Port: 7}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		var b [4]byte
		for {
			select {
			case <-p.stopSend:
				return
			case <-t.C:
				binary.BigEndian.PutUint32(b[:], p.sent.Load())
				if _, err := pc.WriteTo(b[:], dst); err == nil {
					p.sent.Add(1)
				}
			}
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n == 4 {
				p.mu.Lock()
				p.got[binary.BigEndian.Uint32(buf)] = time.Now()
				p.mu.Unlock()
			}
		}
	}()
	return p, nil
}

// stop ends the probe and returns how many were sent and lost, and the
// longest run of consecutive losses (at 1 ms apart, its length in ms).
func (p *prober) stop() (sent, lost, longest int) {
	close(p.stopSend)
	time.Sleep(50 * time.Millisecond) // replies in flight
	_ = p.pc.Close()
	p.wg.Wait()
	sent = int(p.sent.Load())
	run := 0
	for i := 0; i < sent; i++ {
		if _, ok := p.got[uint32(i)]; ok {
			run = 0
			continue
		}
		lost++
		run++
		longest = max(longest, run)
	}
	return sent, lost, longest
}

// transfer streams bytes from the kernel host to the lagg's discard service
// until stop is closed.
func (d *demo) transfer(stop <-chan struct{}) (<-chan int64, error) {
	c, err := lab.Dial(d.host, "tcp4", demoLaggIP+":9")
	if err != nil {
		return nil, err
	}
	done := make(chan int64, 1)
	go func() {
		defer c.Close()
		buf := make([]byte, 64<<10)
		var n int64
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			k, err := c.Write(buf)
			n += int64(k)
			if err != nil {
				done <- -n - 1
				return
			}
		}
	}()
	return done, nil
}

// demoFarEnd is the host side of port i's veth: the switch port, or the
// cable's far end.
func demoFarEnd(i int) string { return fmt.Sprintf("ulaggdemoh%d", i) }

// farEndSet sets the far end of port i down or up: the port sees its
// carrier go or come back, as when a cable is pulled at the switch.
func (d *demo) farEndSet(i int, state string) error {
	return lab.Run("ip", "-n", d.host, "link", "set", demoFarEnd(i), state)
}

// firstFrameOn waits until the lagg transmits on port and has sent a frame
// there since tx0, and returns when that was seen.
func (d *demo) firstFrameOn(port string, tx0 uint64, timeout time.Duration) (time.Time, error) {
	for deadline := time.Now().Add(timeout); ; time.Sleep(100 * time.Microsecond) {
		st := d.l.Status()
		if p := st.Port(port); st.TxPort == port && p != nil && p.Counters.TxFrames > tx0 {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no frame on %s within %v (transmitting on %q)", port, timeout, st.TxPort)
		}
	}
}

func (d *demo) txFrames(port string) uint64 {
	st := d.l.Status()
	if p := st.Port(port); p != nil {
		return p.Counters.TxFrames
	}
	return 0
}

func (d *demo) retransmits() int64 {
	out, err := lab.Output("ip", "netns", "exec", d.host, "nstat", "-az", "TcpRetransSegs")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "TcpRetransSegs" {
			var v int64
			fmt.Sscan(f[1], &v)
			return v
		}
	}
	return -1
}

func (d *demo) failover() error {
	st := d.l.Status()
	d.say("   transmitting on %s; starting a TCP transfer to :9 and 1 kHz UDP probes to :7", st.TxPort)
	p, err := d.startProber()
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	res, err := d.transfer(stop)
	if err != nil {
		p.stop()
		return err
	}
	retx0 := d.retransmits()
	start := time.Now()
	time.Sleep(time.Second)
	tx0 := d.txFrames(demoPort1)
	pulled := time.Now()
	if err := d.farEndSet(0, "down"); err != nil {
		close(stop)
		p.stop()
		return err
	}
	first, err := d.firstFrameOn(demoPort1, tx0, 3*time.Second)
	time.Sleep(time.Second)
	close(stop)
	bytes := <-res
	sent, lost, longest := p.stop()
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	if bytes < 0 {
		return fmt.Errorf("the transfer broke after %d bytes", -bytes-1)
	}
	st = d.l.Status()
	d.say("   pulled the cable at the far end (%s, the host side, set down) %v into the transfer", demoFarEnd(0), pulled.Sub(start).Round(time.Millisecond))
	d.say("   now transmitting on %s: %v from the far end going down to the first frame on %s",
		st.TxPort, first.Sub(pulled).Round(10*time.Microsecond), st.TxPort)
	d.say("   (ulagg reads each port's carrier every 10 ms; Linux's own link event for a NIC comes up to 1 s")
	d.say("   later; the switch itself took %v once the carrier loss was seen)", st.LastFailover.Round(time.Microsecond))
	d.say("   UDP probes: %d sent, %d lost (longest gap %d ms)", sent, lost, longest)
	retx := "n/a (no nstat)"
	if r1 := d.retransmits(); retx0 >= 0 && r1 >= 0 {
		retx = fmt.Sprint(r1 - retx0)
	}
	d.say("   TCP: %.0f MB in %v (%.0f MB/s), no reset; the kernel retransmitted %s segments",
		float64(bytes)/1e6, elapsed.Round(time.Millisecond), float64(bytes)/1e6/elapsed.Seconds(), retx)
	return nil
}

// probedSwitch runs the UDP prober around act, which should move
// transmission to port within timeout (what names that in an error): it
// returns how long the move took from act, and the prober's tally.
func (d *demo) probedSwitch(act func() error, port, what string, timeout time.Duration) (took time.Duration, sent, lost, longest int, err error) {
	p, err := d.startProber()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	time.Sleep(200 * time.Millisecond)
	at := time.Now()
	if err := act(); err != nil {
		p.stop()
		return 0, 0, 0, 0, err
	}
	err = d.waitFor(timeout, what, func() bool { return d.l.Status().TxPort == port })
	took = time.Since(at)
	time.Sleep(300 * time.Millisecond)
	sent, lost, longest = p.stop()
	return took, sent, lost, longest, err
}

func (d *demo) preempt() error {
	tx0 := d.txFrames(demoPort0)
	var upAt, first time.Time
	_, sent, lost, longest, err := d.probedSwitch(func() error {
		upAt = time.Now()
		if err := d.farEndSet(0, "up"); err != nil {
			return err
		}
		var err error
		first, err = d.firstFrameOn(demoPort0, tx0, 5*time.Second)
		return err
	}, demoPort0, "pre-emption", 5*time.Second)
	if err != nil {
		return err
	}
	d.say("   the far end is back: %s has the better priority; after up_delay_ms %d (the switch port's own",
		demoPort0, demoUpDelay.Milliseconds())
	d.say("   start-up) its first frame went out %v after the cable returned", first.Sub(upAt).Round(10*time.Microsecond))
	d.say("   UDP probes: %d sent, %d lost (longest gap %d ms)", sent, lost, longest)
	d.say("   gratuitous ARP told the host's bridge where lagg0 is now (it sends one on every change)")
	return nil
}

func (d *demo) loadbalance() error {
	if err := d.spread(config.ProtoLoadBalance, 8); err != nil {
		return err
	}
	return d.iperf3()
}

func (d *demo) roundrobin() error { return d.spread(config.ProtoRoundRobin, 1) }

// spread switches lagg0 to proto and sends flows TCP flows to the host,
// showing each port's share.
func (d *demo) spread(proto string, flows int) error {
	lc := *d.a.Config().Lagg("lagg0")
	lc.Proto = proto
	if err := d.a.ApplyLagg(lc); err != nil {
		return err
	}
	d.say("   protocol switched to %s at runtime (ports kept)", proto)
	ln, err := lab.Listen(d.host, "tcp4", demoHostIP+":5001")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	before := d.l.Status()
	perFlow := 256 << 20 / flows
	var wg sync.WaitGroup
	errs := make(chan error, flows)
	start := time.Now()
	for range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(d.ctx, 30*time.Second)
			defer cancel()
			c, err := gonet.DialContextTCP(ctx, d.a.Stack(), tcpip.FullAddress{Addr: tcpip.AddrFrom4([4]byte{10, 200, 0, 1}), Port: 5001}, ipv4.ProtocolNumber)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			buf := make([]byte, 64<<10)
			for n := 0; n < perFlow; n += len(buf) {
				if _, err := c.Write(buf); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	after := d.l.Status()
	d.say("   %d TCP flows from lagg0 to the host, %d MiB each: %.0f MB/s in all", flows, perFlow>>20, float64(flows*perFlow)/1e6/elapsed.Seconds())
	tw := tabwriter.NewWriter(d.out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "   port\tflags\ttx frames\ttx MB\trx frames\tshare of tx\t\n")
	var total uint64
	for _, p := range after.Ports {
		total += p.Counters.TxBytes - before.Port(p.Name).Counters.TxBytes
	}
	for _, p := range after.Ports {
		b := before.Port(p.Name).Counters
		tx := p.Counters.TxBytes - b.TxBytes
		fmt.Fprintf(tw, "   %s\t%s\t%d\t%.1f\t%d\t%.0f%%\t\n", p.Name, p.Flags, p.Counters.TxFrames-b.TxFrames,
			float64(tx)/1e6, p.Counters.RxFrames-b.RxFrames, 100*float64(tx)/float64(max(total, 1)))
	}
	return tw.Flush()
}
