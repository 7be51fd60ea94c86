package host

import (
	"errors"
	"log/slog"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The name watcher: a configured port whose interface does not exist (yet,
// or any more: deleted, or moved to another namespace) waits for it with
// WatchAppear, which follows rtnetlink RTM_NEWLINK announcements by name.
// It is event driven, like the link watcher, but by name rather than
// ifindex, since a re-created interface gets a new index.

// IsMissing reports whether err (from opening a host port) says that the
// interface does not exist in its namespace.
func IsMissing(err error) bool {
	return errors.As(err, new(netlink.LinkNotFoundError))
}

// WatchAppear calls fn each time an interface called name is announced
// (RTM_NEWLINK) in network namespace netns ("" for the calling thread's, a
// name from /var/run/netns, or a path): when it is created, renamed to
// name, moved into the namespace (an interface moved back), or changes
// state. An interface that exists already is announced at once. fn runs on
// the watcher's goroutine, one call at a time, and must not block.
//
// If the subscription fails (e.g. its socket overflowed), the watcher
// subscribes again and lists the interfaces again, so an interface that
// appeared meanwhile is announced. cancel stops the watcher and waits for
// its goroutine; it is idempotent and must not be called from fn.
func WatchAppear(netns, name string, fn func()) (cancel func(), err error) {
	if fn == nil || name == "" {
		return nil, errors.New("WatchAppear: a name and a callback are required")
	}
	ns, err := openNetNS(netns)
	if err != nil {
		return nil, err
	}
	w := &appearWatch{
		ns:     ns,
		name:   name,
		fn:     fn,
		stop:   make(chan struct{}),
		exited: make(chan struct{}),
	}
	w.sub = linkSubscription{
		inNS:         ns.do,
		listExisting: true, // an interface that exists is announced at once
		stop:         w.stop,
		log:          slog.Default().With("component", "appear", "port", name),
		errLevel:     slog.LevelDebug,
	}
	ch, done, err := w.sub.open()
	if err != nil {
		ns.close()
		return nil, err
	}
	go w.run(ch, done)
	var once sync.Once
	return func() {
		once.Do(func() {
			close(w.stop)
			<-w.exited
		})
	}, nil
}

type appearWatch struct {
	ns     *netNS
	name   string
	fn     func()
	stop   chan struct{} // closed by cancel
	exited chan struct{} // closed when run has returned
	sub    linkSubscription
}

// run announces every RTM_NEWLINK for the name; a renewed subscription
// lists the interfaces again, so nothing needs replaying.
func (w *appearWatch) run(ch chan netlink.LinkUpdate, done chan struct{}) {
	defer close(w.exited)
	defer w.ns.close()
	w.sub.run(ch, done, func(u netlink.LinkUpdate) {
		if u.Header.Type == unix.RTM_NEWLINK && u.Link != nil && u.Link.Attrs() != nil && u.Link.Attrs().Name == w.name {
			w.fn()
		}
	}, nil)
}
