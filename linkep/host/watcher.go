package host

import (
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The link watcher: one rtnetlink RTNLGRP_LINK subscription per network
// namespace, shared by every port in that namespace and fanned out by
// ifindex. It is event driven; the subscription goroutine exists while at
// least one watch is registered.
//
// Locking: linkWatchers.mu, then linkWatcher.mu. Neither is held while a
// callback runs, so callbacks may register and cancel watches.

var linkWatchers struct {
	mu sync.Mutex
	// +checklocks:mu
	m map[nsKey]*linkWatcher
}

// WatchLink calls fn with every rtnetlink update (RTM_NEWLINK or
// RTM_DELLINK) for interface ifindex in network namespace ns; the caller keeps
// ownership of ns. fn runs on the watcher goroutine of that namespace, one
// update at a time for all interfaces there: it must not block. fn may call
// WatchLink and cancel functions.
//
// If the subscription fails (e.g. the socket overflowed), the watcher
// resubscribes and replays the current state of every watched interface, with
// a synthetic RTM_DELLINK for interfaces that vanished meanwhile.
//
// cancel is idempotent. When it removes the last watch of a namespace it stops
// the subscription and waits for its goroutine, except when called from inside
// a callback: the goroutine then ends as soon as that callback returns.
func WatchLink(ns netns.NsHandle, ifindex int, fn func(netlink.LinkUpdate)) (cancel func(), err error) {
	if fn == nil {
		return nil, errors.New("WatchLink: nil callback")
	}
	key, err := nsKeyOf(ns)
	if err != nil {
		return nil, err
	}
	linkWatchers.mu.Lock()
	defer linkWatchers.mu.Unlock()
	w := linkWatchers.m[key]
	if w == nil {
		if w, err = startLinkWatcher(ns, key); err != nil {
			return nil, err
		}
		if linkWatchers.m == nil {
			linkWatchers.m = make(map[nsKey]*linkWatcher)
		}
		linkWatchers.m[key] = w
	}
	r := &linkWatch{index: ifindex, fn: fn}
	w.mu.Lock()
	w.regs[ifindex] = append(w.regs[ifindex], r)
	w.n++
	w.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { w.remove(r) }) }, nil
}

type linkWatch struct {
	index int
	fn    func(netlink.LinkUpdate)
	dead  atomic.Bool
}

type linkWatcher struct {
	key    nsKey
	ns     netns.NsHandle  // a dup owned by the goroutine
	nl     *netlink.Handle // for replays after resubscribing
	stop   chan struct{}   // closed when the last watch goes
	exited chan struct{}   // closed when the goroutine has returned
	inCall atomic.Bool     // a callback is running on the goroutine
	log    *slog.Logger
	sub    linkSubscription

	mu sync.Mutex
	// +checklocks:mu
	regs map[int][]*linkWatch
	// +checklocks:mu
	n int

	scratch []*linkWatch // goroutine only
}

// +checklocks:linkWatchers.mu
func startLinkWatcher(ns netns.NsHandle, key nsKey) (*linkWatcher, error) {
	dup, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	w := &linkWatcher{
		key:    key,
		ns:     netns.NsHandle(dup),
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
		log:    slog.Default().With("component", "linkwatch"),
		regs:   make(map[int][]*linkWatch),
	}
	err = inNetNS(w.ns, func() error {
		var err error
		w.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		w.ns.Close()
		return nil, err
	}
	w.sub = linkSubscription{
		inNS:     func(fn func() error) error { return inNetNS(w.ns, fn) },
		stop:     w.stop,
		log:      w.log,
		errLevel: slog.LevelWarn,
	}
	ch, done, err := w.sub.open()
	if err != nil {
		w.nl.Close()
		w.ns.Close()
		return nil, err
	}
	go w.run(ch, done)
	return w, nil
}

// run dispatches updates until the last watch goes; after a renewed
// subscription it replays what may have been missed.
func (w *linkWatcher) run(ch chan netlink.LinkUpdate, done chan struct{}) {
	defer close(w.exited)
	defer w.ns.Close()
	defer w.nl.Close()
	w.sub.run(ch, done, w.dispatch, w.replay)
}

// replay delivers the current state of every watched interface.
func (w *linkWatcher) replay() {
	w.mu.Lock()
	idx := make([]int, 0, len(w.regs))
	for i := range w.regs {
		idx = append(idx, i)
	}
	w.mu.Unlock()
	for _, i := range idx {
		link, err := w.nl.LinkByIndex(i)
		var u netlink.LinkUpdate
		switch {
		case err == nil:
			u.Header.Type = unix.RTM_NEWLINK
			u.Link = link
		case errors.As(err, new(netlink.LinkNotFoundError)):
			u.Header.Type = unix.RTM_DELLINK
			u.Link = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: i}}
		default:
			w.log.Warn("rtnetlink replay failed", "ifindex", i, "err", err)
			continue
		}
		u.Index = int32(i)
		w.dispatch(u)
	}
}

func (w *linkWatcher) dispatch(u netlink.LinkUpdate) {
	idx := int(u.Index)
	if u.Link != nil && u.Link.Attrs() != nil {
		idx = u.Link.Attrs().Index
	}
	w.mu.Lock()
	w.scratch = append(w.scratch[:0], w.regs[idx]...)
	w.mu.Unlock()
	if len(w.scratch) == 0 {
		return
	}
	w.inCall.Store(true)
	for _, r := range w.scratch {
		if !r.dead.Load() {
			r.fn(u)
		}
	}
	w.inCall.Store(false)
	clear(w.scratch)
}

func (w *linkWatcher) remove(r *linkWatch) {
	r.dead.Store(true)
	linkWatchers.mu.Lock()
	w.mu.Lock()
	rs := w.regs[r.index]
	for i, x := range rs {
		if x == r {
			rs = append(rs[:i], rs[i+1:]...)
			break
		}
	}
	if len(rs) == 0 {
		delete(w.regs, r.index)
	} else {
		w.regs[r.index] = rs
	}
	w.n--
	last := w.n == 0
	w.mu.Unlock()
	if last {
		delete(linkWatchers.m, w.key)
		close(w.stop)
	}
	linkWatchers.mu.Unlock()
	// Waiting from inside a callback would wait for ourselves.
	if last && !w.inCall.Load() {
		<-w.exited
	}
}

// linkIsUp is the port link state: admin up and carrier. Not IFF_RUNNING:
// the kernel sets it only when linkwatch runs, up to a second after the
// carrier came (the carrier poller reads the same two flags).
func linkIsUp(a *netlink.LinkAttrs) bool {
	const want = unix.IFF_UP | unix.IFF_LOWER_UP
	return a.RawFlags&want == want
}
