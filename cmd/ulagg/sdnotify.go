package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ulagg/ulagg/stack/appliance"
)

// systemd's notify protocol (sd_notify(3)) for Type=notify: READY=1 once
// every lagg is applied, RELOADING=1/READY=1 around reloads, STOPPING=1,
// and WATCHDOG=1 while the control path answers. Without $NOTIFY_SOCKET
// every call is a no-op. A few lines of the protocol rather than a
// dependency: it is one datagram per state.

// sdNotifier sends to $NOTIFY_SOCKET.
type sdNotifier struct {
	addr string // "" = not under systemd
	log  *slog.Logger
}

func newSDNotifier(log *slog.Logger) *sdNotifier {
	return &sdNotifier{addr: os.Getenv("NOTIFY_SOCKET"), log: log}
}

// notify sends state lines (e.g. "READY=1"); an error is logged once per
// call and otherwise ignored: systemd going away must not stop ulagg.
func (n *sdNotifier) notify(lines ...string) {
	if n == nil || n.addr == "" {
		return
	}
	if err := sdSend(n.addr, strings.Join(lines, "\n")); err != nil {
		n.log.Warn("systemd notify failed", "state", lines[0], "err", err)
	}
}

// sdSend sends one datagram to a notify socket: a path, or "@name" for the
// abstract namespace.
func sdSend(addr, msg string) error {
	if !strings.HasPrefix(addr, "/") && !strings.HasPrefix(addr, "@") {
		return fmt.Errorf("NOTIFY_SOCKET %q: not a unix socket address", addr)
	}
	name := addr
	if name[0] == '@' {
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(msg))
	return err
}

// monotonicUsec is CLOCK_MONOTONIC in µs, for RELOADING=1's MONOTONIC_USEC.
func monotonicUsec() string {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return strconv.FormatInt(ts.Nano()/1000, 10)
}

func (n *sdNotifier) ready(laggs int) {
	n.notify("READY=1", fmt.Sprintf("STATUS=running, %d laggs", laggs))
}

func (n *sdNotifier) reloading() { n.notify("RELOADING=1", "MONOTONIC_USEC="+monotonicUsec()) }

func (n *sdNotifier) reloaded(err error) {
	if err != nil {
		n.notify("READY=1", "STATUS=reload refused; the running configuration stays")
		return
	}
	n.notify("READY=1", "STATUS=running")
}

func (n *sdNotifier) stopping() { n.notify("STOPPING=1", "STATUS=stopping") }

// watchdogInterval is $WATCHDOG_USEC when it is meant for this process
// ($WATCHDOG_PID absent or ours), else 0.
func watchdogInterval() (time.Duration, error) {
	s := os.Getenv("WATCHDOG_USEC")
	if s == "" {
		return 0, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, nil
	}
	us, err := strconv.ParseUint(s, 10, 63)
	if err != nil || us == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC %q: not a positive number", s)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// sdWatchdog pings systemd every interval/2 while the control path
// answers: the appliance's lock can be taken and the control socket serves
// a status request, both within the half interval. A check still stuck
// from the last round means no ping, so systemd restarts a wedged ulagg.
type sdWatchdog struct {
	n        *sdNotifier
	every    time.Duration
	check    func() error
	checking atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startSDWatchdog(n *sdNotifier, interval time.Duration, check func() error) *sdWatchdog {
	w := &sdWatchdog{n: n, every: interval / 2, check: check, stop: make(chan struct{})}
	w.wg.Add(1)
	go w.routineWatchdog()
	return w
}

func (w *sdWatchdog) routineWatchdog() {
	defer w.wg.Done()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		if w.healthy() {
			w.n.notify("WATCHDOG=1")
		}
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
	}
}

// healthy runs one check, waiting at most half the ping period; a check
// that does not return is left running and blocks the next ones.
func (w *sdWatchdog) healthy() bool {
	if !w.checking.CompareAndSwap(false, true) {
		w.n.log.Error("watchdog: the last health check has not returned; not pinging systemd")
		return false
	}
	done := make(chan error, 1)
	go func() {
		defer w.checking.Store(false)
		done <- w.check()
	}()
	t := time.NewTimer(w.every / 2)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			w.n.log.Error("watchdog: health check failed; not pinging systemd", "err", err)
		}
		return err == nil
	case <-t.C:
		w.n.log.Error("watchdog: health check took longer than its budget; not pinging systemd", "budget", w.every/2)
		return false
	case <-w.stop:
		return false
	}
}

// close stops the pings (a stuck check goroutine is left to the exit).
func (w *sdWatchdog) close() {
	if w == nil {
		return
	}
	close(w.stop)
	w.wg.Wait()
}

// controlHealth is the watchdog's check: the appliance's lock, then a
// status request through the control socket.
func controlHealth(a *appliance.Appliance, sock string) func() error {
	return func() error {
		if err := a.Alive(); err != nil {
			return err
		}
		resp, err := appliance.ControlCall(sock, appliance.ControlRequest{Cmd: appliance.CmdStatus, Names: true})
		if err != nil {
			return err
		}
		if !resp.OK {
			return errors.New(resp.Error)
		}
		return nil
	}
}

// startSystemd tells systemd ulagg is ready and starts the watchdog if
// the unit has one. stop undoes it.
func startSystemd(rt *runtime, a *appliance.Appliance, log *slog.Logger) (stop func()) {
	n := newSDNotifier(log)
	rt.sd.Store(n)
	n.ready(len(a.Config().Laggs))
	every, err := watchdogInterval()
	if err != nil {
		log.Warn("systemd watchdog off", "err", err)
	}
	var w *sdWatchdog
	if every > 0 && n.addr != "" {
		w = startSDWatchdog(n, every, controlHealth(a, rt.ctl.Path()))
		log.Info("systemd watchdog on", "interval", every)
	}
	return func() {
		n.stopping()
		w.close()
	}
}
