package host

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ulagg/ulagg/linkep"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The carrier poller: one goroutine for the process that reads the link
// state of every open host port with ETHTOOL_GLINK, at the smallest interval
// any port asked for (linkep.OpenOptions.CarrierPoll), and reports changes
// through the same path as the rtnetlink watcher (hostLink.setLinkUp), so the
// lagg sees one event per change whichever path saw it first.
//
// Why poll: the kernel sends RTM_NEWLINK for a carrier change only when
// linkwatch runs, which batches non-urgent events up to a second apart;
// the carrier itself is current at once. ETHTOOL_GLINK answers
// netif_running && carrier, i.e. IFF_UP|IFF_LOWER_UP, which is what
// linkIsUp reads from rtnetlink, so both paths agree. Not SIOCGIFFLAGS: it
// truncates the flags to 16 bits, losing IFF_LOWER_UP (its IFF_RUNNING lags
// like the events). Not /sys/class/net/IF/carrier: it needs a sysfs mounted
// for the port's namespace and costs an open/read/close: 14 µs against
// 0.6 µs (BenchmarkCarrierRead). GLINK takes the RTNL lock briefly, 100
// times a second per port at the default. A driver without get_link answers
// EOPNOTSUPP: that port keeps rtnetlink events only.
//
// Sockets: one AF_INET datagram socket per network namespace (an ioctl
// looks the name up in the socket's namespace), shared by the ports there.
//
// Locking: carrierPoller.mu guards the registrations and the sockets; the
// poller holds it while it reads (so no socket closes under an ioctl) and
// calls back without it, so a callback may cancel a poll.

// DefaultCarrierPoll is the carrier poll interval of a port whose options
// leave it at 0.
const DefaultCarrierPoll = 10 * time.Millisecond

// MinCarrierPoll bounds how often the poller runs.
const MinCarrierPoll = time.Millisecond

type carrierNS struct {
	fd   int // AF_INET dgram socket in the namespace
	refs int
}

type carrierWatch struct {
	h     *hostLink
	key   nsKey
	ifr   *ethtoolIfreq // preallocated: the poll allocates nothing
	idx   *unix.Ifreq   // for SIOCGIFINDEX on a change
	index int
	every time.Duration
	last  int8 // -1 unknown, 0 down, 1 up; poller goroutine only, under mu
}

var carrierPoller struct {
	mu sync.Mutex
	// +checklocks:mu
	ns map[nsKey]*carrierNS
	// +checklocks:mu
	watches map[*hostLink]*carrierWatch
	// +checklocks:mu
	every time.Duration // the smallest interval asked for
	// +checklocks:mu
	stop chan struct{} // nil while no goroutine runs
	// +checklocks:mu
	exited chan struct{}
	// +checklocks:mu
	kick chan struct{} // the interval changed
	// +checklocks:mu
	polls uint64 // poll rounds, for tests

	inCall atomic.Bool // the poller goroutine is calling back
}

// pollCarrier registers the port with the poller. every 0 is
// DefaultCarrierPoll; negative disables polling (rtnetlink events only).
// Failing to poll is not fatal: the port keeps its rtnetlink events.
func (h *hostLink) pollCarrier(every time.Duration) {
	if every < 0 {
		return
	}
	if every == 0 {
		every = DefaultCarrierPoll
	}
	if err := registerCarrier(h, every); err != nil {
		h.log.Warn("no carrier polling: link changes come from rtnetlink events only", "err", err)
	}
}

// stopCarrierPoll unregisters the port; idempotent. A callback already
// collected may still run afterwards: setLinkUp checks closed.
func (h *hostLink) stopCarrierPoll() {
	p := &carrierPoller
	p.mu.Lock()
	w := p.watches[h]
	if w == nil {
		p.mu.Unlock()
		return
	}
	delete(p.watches, h)
	if g := p.ns[w.key]; g != nil {
		if g.refs--; g.refs == 0 {
			unix.Close(g.fd)
			delete(p.ns, w.key)
		}
	}
	var stop, exited chan struct{}
	if len(p.watches) == 0 {
		stop, exited = p.stop, p.exited
		p.stop, p.exited, p.every = nil, nil, 0
	} else {
		p.every = minEveryLocked()
		kickLocked()
	}
	p.mu.Unlock()
	if stop != nil {
		close(stop)
		// Waiting from inside a callback would wait for ourselves.
		if !p.inCall.Load() {
			<-exited
		}
	}
}

func registerCarrier(h *hostLink, every time.Duration) error {
	every = max(every, MinCarrierPoll)
	key, err := nsKeyOf(h.ns.h)
	if err != nil {
		return err
	}
	idx, err := unix.NewIfreq(h.name)
	if err != nil {
		return err
	}
	ifr := newEthtoolIfreq(h.name)
	p := &carrierPoller
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.watches[h] != nil {
		return errors.New("carrier poll registered twice")
	}
	g := p.ns[key]
	if g != nil {
		if _, err := readCarrier(g.fd, ifr); err != nil {
			return fmt.Errorf("ETHTOOL_GLINK: %w", err)
		}
	}
	if g == nil {
		fd, err := carrierSocket(h.ns.h)
		if err != nil {
			return err
		}
		if _, err := readCarrier(fd, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("ETHTOOL_GLINK: %w", err)
		}
		g = &carrierNS{fd: fd}
		if p.ns == nil {
			p.ns = make(map[nsKey]*carrierNS)
			p.watches = make(map[*hostLink]*carrierWatch)
		}
		p.ns[key] = g
	}
	g.refs++
	p.watches[h] = &carrierWatch{h: h, key: key, ifr: ifr, idx: idx, index: h.index, every: every, last: -1}
	if p.stop == nil {
		p.stop, p.exited, p.kick = make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
		p.every = every
		go routineCarrierPoll(p.stop, p.exited, p.kick, every)
		return nil
	}
	if every < p.every {
		p.every = every
		kickLocked()
	}
	return nil
}

func carrierSocket(ns netns.NsHandle) (int, error) {
	fd := -1
	err := inNetNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("carrier poll socket: %w", err)
	}
	return fd, nil
}

// +checklocks:carrierPoller.mu
func minEveryLocked() time.Duration {
	var m time.Duration
	for _, w := range carrierPoller.watches {
		if m == 0 || w.every < m {
			m = w.every
		}
	}
	return m
}

// +checklocks:carrierPoller.mu
func kickLocked() {
	select {
	case carrierPoller.kick <- struct{}{}:
	default:
	}
}

// carrierChange is a change the poller saw, reported outside the lock.
type carrierChange struct {
	h  *hostLink
	up bool
}

func routineCarrierPoll(stop, exited, kick chan struct{}, every time.Duration) {
	defer close(exited)
	log := slog.Default().With("component", "carrierpoll")
	log.Debug("started", "every", every)
	defer log.Debug("stopped")
	t := time.NewTicker(every)
	defer t.Stop()
	var changes []carrierChange
	for {
		select {
		case <-stop:
			return
		case <-kick:
			carrierPoller.mu.Lock()
			if e := carrierPoller.every; e > 0 && e != every {
				every = e
				t.Reset(every)
			}
			carrierPoller.mu.Unlock()
			continue
		case <-t.C:
		}
		changes = pollCarrierOnce(changes[:0])
		carrierPoller.inCall.Store(true)
		for _, c := range changes {
			c.h.setLinkUp(c.up)
		}
		carrierPoller.inCall.Store(false)
		clear(changes)
	}
}

// pollCarrierOnce reads every registered port once and appends those whose
// state changed since the last read.
func pollCarrierOnce(changes []carrierChange) []carrierChange {
	p := &carrierPoller
	p.mu.Lock()
	defer p.mu.Unlock()
	p.polls++
	for _, w := range p.watches {
		g := p.ns[w.key]
		if g == nil {
			continue
		}
		up, err := readCarrier(g.fd, w.ifr)
		if err != nil {
			continue // gone or renamed: rtnetlink reports that
		}
		v := int8(0)
		if up {
			v = 1
		}
		if v == w.last {
			continue
		}
		// A changed answer could come from another interface that took
		// the name of ours: check the index before believing it.
		w.idx.SetUint32(0)
		if unix.IoctlIfreq(g.fd, unix.SIOCGIFINDEX, w.idx) != nil || int(w.idx.Uint32()) != w.index {
			continue
		}
		w.last = v
		changes = append(changes, carrierChange{h: w.h, up: up})
	}
	return changes
}

// ethtoolIfreq is struct ifreq with ifr_data pointing at a struct
// ethtool_value, both kept here so the ioctl allocates nothing.
type ethtoolIfreq struct {
	ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr // &val, which lives as long as this struct
		_    [unsafe.Sizeof(unix.Ifreq{}) - unix.IFNAMSIZ - unsafe.Sizeof(uintptr(0))]byte
	}
	val struct{ cmd, data uint32 }
}

func newEthtoolIfreq(name string) *ethtoolIfreq {
	e := &ethtoolIfreq{}
	copy(e.ifr.name[:unix.IFNAMSIZ-1], name)
	e.ifr.data = uintptr(unsafe.Pointer(&e.val))
	return e
}

// readCarrier asks ETHTOOL_GLINK: admin up and carrier.
func readCarrier(fd int, e *ethtoolIfreq) (up bool, err error) {
	e.val.cmd, e.val.data = unix.ETHTOOL_GLINK, 0
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&e.ifr)))
	if errno != 0 {
		return false, errno
	}
	return e.val.data != 0, nil
}

// readCarrierNow reads the port's carrier at once if the poller watches
// it; ok is false otherwise (not polled, or the read failed).
func (h *hostLink) readCarrierNow() (up, ok bool) {
	p := &carrierPoller
	p.mu.Lock()
	defer p.mu.Unlock()
	w := p.watches[h]
	if w == nil {
		return false, false
	}
	g := p.ns[w.key]
	if g == nil {
		return false, false
	}
	up, err := readCarrier(g.fd, w.ifr)
	return up, err == nil
}

// setLinkUp records the link state one path (rtnetlink or the poller) saw
// and tells the lagg if it changed.
func (h *hostLink) setLinkUp(up bool) {
	h.mu.Lock()
	if h.closed || h.gone || h.up == up {
		h.mu.Unlock()
		return
	}
	h.up = up
	h.mu.Unlock()
	if up {
		h.refreshSpeed() // renegotiated links may change speed
	}
	if fn := h.handler.Load(); fn != nil {
		(*fn)(linkep.Event{Kind: linkep.LinkChanged, Up: up})
	}
}
