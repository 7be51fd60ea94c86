package integration

// The memory budget harness: three attacks on the appliance's built-in
// services from the kernel host's namespace, each against a fresh
// appliance running in this process, measuring what the process holds
// (VmRSS, and VmHWM reset before the attack, from /proc/self/status) and
// how many goroutines it runs, and checking that a legitimate client, from
// another address of the host, is still served while the attack holds:
//
//   - idle:     15,000 tcp-echo connections that send nothing;
//   - noread:   100 clients that send to tcp-echo and never read;
//   - synflood: SYNs from a raw socket, spoofed from on-link addresses
//     that never answer ARP, to tcp-echo, tcp-discard and http-status, at
//     50,000 a second ($ULAGG_BUDGET_SYN_PPS; 0 = as fast as one goroutine
//     sends, 100,000 to 175,000 a second here, which would outrun gVisor's
//     listener but for the appliance's SYN admission, limits.syn_rate);
//   - synflood_unpaced: the same, as fast as one goroutine sends, whatever
//     $ULAGG_BUDGET_SYN_PPS says: the SYN admission must drop SYNs.
//
// Every attack is bounded in count and in time and only reaches the
// namespaces the test creates. The figures are the "measure: budget"
// lines:
//
//	go test -count=1 -v -run TestBudget ./integration/ 2>&1 | grep measure:
//	ULAGG_BUDGET_SYN_PPS=0 go test -count=1 -v -run TestBudget/synflood ./integration/
//
// $ULAGG_BUDGET_PROFILE=DIR writes heap and goroutine profiles of the
// flood; $ULAGG_BUDGET_TRACE=1 prints the goroutines and heap every half
// second of an attack.
//
// The appliance runs as `ulagg run` would, with its default process
// memory limit (appliance.ApplyMemoryLimit of the defaults).

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/stack/appliance"
)

// budgetRSS is the most the process may hold (VmHWM) during an attack.
const budgetRSS = 150 << 20

// legitIP is a second address of the kernel host: the legitimate client,
// which the per-source limits must not count with the attacker (hostIP).
const legitIP = "10.231.0.3"

// budgetRig is a topology and an appliance serving tcp-echo 7,
// tcp-discard 9, udp-echo 7 and http-status 80 on laggIP.
type budgetRig struct {
	tp *topo
	a  *appliance.Appliance
}

func newBudgetRig(t *testing.T) *budgetRig {
	t.Helper()
	tp := newTopo(t, 1)
	if err := lab.Run("ip", "-n", tp.host, "addr", "add", legitIP+"/24", "dev", tp.bridge); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Laggs = []config.Lagg{laggConfig(config.ProtoFailover, tp.ports...)}
	cfg.Services = []config.Service{
		{Kind: "tcp-echo", Port: echoPort},
		{Kind: "tcp-discard", Port: discardPort},
		{Kind: "udp-echo", Port: echoPort},
		{Kind: "http-status", Port: 80},
	}
	tl := newTestLog(t)
	open := func(p config.Port, log *slog.Logger) (linkep.Port, error) {
		return linkep.Open(p.Kind, p.Name, linkep.OpenOptions{Netns: tp.lag, SpeedMbps: p.SpeedMbps, Logger: log})
	}
	applyDefaultMemoryLimit(t, cfg)
	a, err := appliance.New(cfg, appliance.Options{Logger: tl.logger, OpenPort: open})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	l := a.Lagg("lagg0")
	testkit.WaitFor(t, 5*time.Second, "lagg0 up", func() bool { return l.Status().Up })
	r := &budgetRig{tp: tp, a: a}
	r.legitEcho(t) // and the appliance knows the legitimate client's MAC
	return r
}

// legitDialer dials addr over TCP from legitIP in the host namespace.
func (r *budgetRig) legitDialer(addr string) testkit.Dialer {
	return func(ctx context.Context) (net.Conn, error) {
		var c net.Conn
		err := lab.Do(r.tp.host, func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(legitIP)}}
			c, err = d.DialContext(ctx, "tcp4", addr)
			return err
		})
		return c, err
	}
}

// legitEcho is a legitimate client of tcp-echo: 64 KiB there and back.
func (r *budgetRig) legitEcho(t *testing.T) {
	t.Helper()
	testkit.CheckEcho(t, r.legitDialer(net.JoinHostPort(laggIP, strconv.Itoa(echoPort))), testkit.Bytes(7, 64<<10))
}

// memSample is what the process holds.
type memSample struct {
	rss, hwm   int64 // bytes
	goroutines int
}

func readMem(t testing.TB) memSample {
	t.Helper()
	m := readProcMem(t, os.Getpid()) // rss_test.go
	return memSample{rss: m.RSS << 10, hwm: m.HWM << 10, goroutines: runtime.NumGoroutine()}
}

// settle collects garbage, gives memory back and resets the peak RSS
// (VmHWM), so that the next readMem's hwm is the peak since now.
func settle(t testing.TB) memSample {
	t.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	time.Sleep(200 * time.Millisecond)
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		t.Fatalf("resetting VmHWM: %v", err)
	}
	return readMem(t)
}

// peakGoroutines samples the goroutine count until stop is called and
// returns the highest seen.
func peakGoroutines() (stop func() int) {
	var peak atomic.Int64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		start := time.Now()
		i := 0
		for {
			if n := int64(runtime.NumGoroutine()); n > peak.Load() {
				peak.Store(n)
			}
			if i++; os.Getenv("ULAGG_BUDGET_TRACE") != "" && i%25 == 0 {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				f, _ := os.ReadFile("/proc/self/statm")
				fmt.Fprintf(os.Stderr, "trace %5.1fs goroutines %d heap %d MB sys %d MB statm %s\n", time.Since(start).Seconds(), runtime.NumGoroutine(), ms.HeapInuse>>20, ms.Sys>>20, strings.TrimSpace(string(f)))
			}
			select {
			case <-done:
				return
			case <-tk.C:
			}
		}
	}()
	return func() int {
		close(done)
		wg.Wait()
		return int(peak.Load())
	}
}

// report logs the measure line for one attack and fails the test if the
// budget was exceeded.
func report(t *testing.T, name, what string, before memSample, peakG int, legit error) {
	t.Helper()
	after := readMem(t)
	mb := func(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }
	legitWord := "served"
	if legit != nil {
		legitWord = "NOT served: " + legit.Error()
	}
	t.Logf("measure: budget %s: %s: RSS %s → %s (+%s), peak %s; goroutines %d → %d (peak %d, +%d); legitimate client %s",
		name, what, mb(before.rss), mb(after.rss), mb(after.rss-before.rss), mb(after.hwm),
		before.goroutines, after.goroutines, peakG, peakG-before.goroutines, legitWord)
	if after.hwm > budgetRSS {
		t.Errorf("%s: peak RSS %s, over the budget of %s", name, mb(after.hwm), mb(budgetRSS))
	}
	if legit != nil {
		t.Errorf("%s: the legitimate client was not served: %v", name, legit)
	}
}

// legitDuring runs the legitimate client and returns its failure instead
// of failing the test at once.
func (r *budgetRig) legitDuring(t *testing.T) error {
	rec := &errRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		testkit.CheckEcho(rec, r.legitDialer(net.JoinHostPort(laggIP, strconv.Itoa(echoPort))), testkit.Bytes(7, 64<<10))
	}()
	<-done
	return rec.err()
}

// TestBudget runs the three attacks; see the top of this file.
func TestBudget(t *testing.T) {
	t.Run("idle", func(t *testing.T) { budgetIdle(t, 15000) })
	t.Run("noread", func(t *testing.T) { budgetNoRead(t, 100, 8*time.Second) })
	t.Run("synflood", func(t *testing.T) { budgetSYNFlood(t, 10*time.Second, 3_000_000, synFloodPPS()) })
	t.Run("synflood_unpaced", func(t *testing.T) { budgetSYNFlood(t, 10*time.Second, 3_000_000, 0) })
}

// budgetIdle opens n connections to tcp-echo from hostIP and holds them,
// sending nothing.
func budgetIdle(t *testing.T, n int) {
	r := newBudgetRig(t)
	before := settle(t)
	stopG := peakGoroutines()
	const workers = 50
	var mu sync.Mutex
	conns := make([]net.Conn, 0, n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = lab.Do(r.tp.host, func() error {
				d := net.Dialer{Timeout: 3 * time.Second}
				for i := w; i < n && time.Now().Before(deadline); i += workers {
					c, err := d.Dial("tcp4", net.JoinHostPort(laggIP, strconv.Itoa(echoPort)))
					if err != nil {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, err.Error())
						continue
					}
					mu.Lock()
					conns = append(conns, c)
					mu.Unlock()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	time.Sleep(2 * time.Second) // let the appliance take in what the kernel completed
	legit := r.legitDuring(t)
	peakG := stopG()
	why := ""
	if e := firstErr.Load(); e != nil {
		why = fmt.Sprintf(" (first: %s)", e)
	}
	report(t, "idle", fmt.Sprintf("%d idle tcp-echo connections opened, %d dials failed%s", len(conns), failed.Load(), why), before, peakG, legit)
}

// budgetNoRead runs n clients that write to tcp-echo as fast as they can
// for d and never read; their connections stay open until measured.
func budgetNoRead(t *testing.T, n int, d time.Duration) {
	r := newBudgetRig(t)
	before := settle(t)
	stopG := peakGoroutines()
	var sent atomic.Int64
	var wg sync.WaitGroup
	var conns []net.Conn
	var dialFailed int
	end := time.Now().Add(d)
	for range n {
		c, err := lab.Dial(r.tp.host, "tcp4", net.JoinHostPort(laggIP, strconv.Itoa(echoPort)))
		if err != nil {
			dialFailed++
			continue
		}
		conns = append(conns, c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64<<10)
			for time.Now().Before(end) {
				_ = c.SetWriteDeadline(end)
				k, err := c.Write(buf)
				sent.Add(int64(k))
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	legit := r.legitDuring(t)
	peakG := stopG()
	report(t, "noread", fmt.Sprintf("%d clients (%d dials failed) sent %d MB in %v and read nothing", len(conns), dialFailed, sent.Load()>>20, d), before, peakG, legit)
}

// budgetSYNFlood sends TCP SYNs from a raw socket in the host namespace,
// from random ports of on-link addresses nobody has (so the appliance's
// ARP requests go unanswered and its SYN-ACKs wait for them), to tcp-echo,
// tcp-discard and http-status, at pps packets a second (0: as fast as one
// goroutine can), for d or count packets, whichever ends first. Halfway
// through, the legitimate client is checked.
func budgetSYNFlood(t *testing.T, d time.Duration, count, pps int) {
	r := newBudgetRig(t)
	before := settle(t)
	stopG := peakGoroutines()
	profileMidway(t, "synflood", d*19/20)
	var sent int
	var sendErr error
	flood := make(chan error, 1)
	go func() {
		flood <- lab.Do(r.tp.host, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			dst := laggAddr.As4()
			to := &unix.SockaddrInet4{Addr: dst}
			rnd := rand.New(rand.NewPCG(1, 2))
			ports := []uint16{echoPort, discardPort, 80}
			pkt := make([]byte, 40)
			start := time.Now()
			end := start.Add(d)
			for sent < count {
				if sent%256 == 0 {
					now := time.Now()
					if now.After(end) {
						break
					}
					if pps > 0 {
						if ahead := time.Duration(sent)*time.Second/time.Duration(pps) - now.Sub(start); ahead > 0 {
							time.Sleep(ahead)
						}
					}
				}
				// Spoofed sources: 10.231.0.16 .. 10.231.0.255, none of
				// which exists.
				src := [4]byte{10, 231, 0, byte(16 + rnd.IntN(240))}
				synPacket(pkt, src, dst, uint16(1024+rnd.IntN(64000)), ports[sent%len(ports)], rnd.Uint32())
				if err := unix.Sendto(fd, pkt, 0, to); err != nil {
					if errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.EAGAIN) {
						time.Sleep(time.Millisecond)
						continue
					}
					sendErr = err
					return nil
				}
				sent++
			}
			return nil
		})
	}()
	time.Sleep(d / 2)
	legit := r.legitDuring(t)
	if err := <-flood; err != nil {
		t.Fatal(err)
	}
	if sendErr != nil {
		t.Fatalf("raw send after %d SYNs: %v", sent, sendErr)
	}
	time.Sleep(time.Second)
	peakG := stopG()
	rate := "as fast as it could"
	if pps > 0 {
		rate = fmt.Sprintf("paced at %d/s", pps)
	}
	admissionDrops := r.a.SYNAdmissionDrops()
	report(t, "synflood", fmt.Sprintf("%d spoofed SYNs in %v (%s) from 240 on-link addresses that never answer ARP, %d dropped by SYN admission", sent, d, rate, admissionDrops), before, peakG, legit)
	// Unpaced, the flood is several times limits.syn_rate: SYN admission
	// must have dropped some (not a fixed share: the kernel may drop some
	// of the flood before the appliance reads it).
	if pps == 0 && admissionDrops == 0 {
		t.Errorf("synflood: %d SYNs sent as fast as possible, none dropped by SYN admission", sent)
	}
}

// synPacket writes an IPv4 TCP SYN into b (40 bytes).
func synPacket(b []byte, src, dst [4]byte, sport, dport uint16, seq uint32) {
	clear(b)
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], 40)
	b[8] = 64
	b[9] = unix.IPPROTO_TCP
	copy(b[12:16], src[:])
	copy(b[16:20], dst[:])
	binary.BigEndian.PutUint16(b[10:], ^csum(0, b[:20]))
	tcp := b[20:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	tcp[12] = 5 << 4
	tcp[13] = 0x02 // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	var pseudo [12]byte
	copy(pseudo[0:4], src[:])
	copy(pseudo[4:8], dst[:])
	pseudo[9] = unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(pseudo[10:], 20)
	binary.BigEndian.PutUint16(tcp[16:], ^csum(uint32(csum(0, pseudo[:])), tcp))
}

// csum adds b to the ones' complement sum s (folded).
func csum(s uint32, b []byte) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// errRecorder is a testing.TB that records the first failure instead of
// reporting it; its Fatal ends the calling goroutine, as testing's does.
// legitDuring runs the check on a goroutine of its own.
type errRecorder struct {
	testing.TB
	mu sync.Mutex
	// +checklocks:mu
	first error
}

func (r *errRecorder) Helper() {}

func (r *errRecorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == nil {
		r.first = fmt.Errorf(format, args...)
	}
}

func (r *errRecorder) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *errRecorder) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *errRecorder) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

func (r *errRecorder) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

// applyDefaultMemoryLimit sets the process memory limit as `ulagg run`
// does for cfg, until the test ends.
func applyDefaultMemoryLimit(t *testing.T, cfg *config.Config) {
	old := debug.SetMemoryLimit(-1)
	appliance.ApplyMemoryLimit(cfg.Limits)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
}

// profileMidway writes heap and goroutine profiles of the attack after
// wait, to $ULAGG_BUDGET_PROFILE/NAME.{heap,goroutine}, when that variable
// names a directory:
//
//	ULAGG_BUDGET_PROFILE=/tmp go test -count=1 -run TestBudget/synflood ./integration/
//	go tool pprof -top /tmp/synflood.heap
func profileMidway(t *testing.T, name string, wait time.Duration) {
	dir := os.Getenv("ULAGG_BUDGET_PROFILE")
	if dir == "" {
		return
	}
	done := make(chan struct{})
	t.Cleanup(func() { <-done })
	go func() {
		defer close(done)
		time.Sleep(wait)
		for _, p := range []string{"heap", "goroutine"} {
			f, err := os.Create(filepath.Join(dir, name+"."+p))
			if err != nil {
				t.Errorf("profile: %v", err)
				return
			}
			_ = pprof.Lookup(p).WriteTo(f, 0)
			f.Close()
		}
	}()
}

// synFloodPPS is the SYN flood's rate: $ULAGG_BUDGET_SYN_PPS, else
// defaultSYNFloodPPS (0 = unpaced).
func synFloodPPS() int {
	if v, err := strconv.Atoi(os.Getenv("ULAGG_BUDGET_SYN_PPS")); err == nil {
		return v
	}
	return defaultSYNFloodPPS
}

const defaultSYNFloodPPS = 50000
