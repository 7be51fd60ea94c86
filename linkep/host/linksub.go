package host

import (
	"context"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
)

// linkSubscription is an rtnetlink RTNLGRP_LINK subscription in one network
// namespace that renews itself when the library's receive goroutine ends
// (typically ENOBUFS after a burst of events), for the link watcher and the
// appearance watcher alike.
type linkSubscription struct {
	inNS         func(fn func() error) error // runs fn in the namespace
	listExisting bool                        // list the interfaces again on every (re)subscription
	stop         <-chan struct{}
	log          *slog.Logger
	errLevel     slog.Level // for subscription errors while not stopping
}

// open subscribes once.
func (s *linkSubscription) open() (chan netlink.LinkUpdate, chan struct{}, error) {
	ch := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	err := s.inNS(func() error {
		return netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			ListExisting:  s.listExisting,
			ErrorCallback: s.onError,
			// SO_RCVBUF, not FORCE: FORCE needs CAP_NET_ADMIN and the
			// library leaks its socket when that setsockopt fails.
			ReceiveBufferSize: 1 << 20,
		})
	})
	if err != nil {
		close(done)
		return nil, nil, err
	}
	return ch, done, nil
}

func (s *linkSubscription) onError(err error) {
	select {
	case <-s.stop:
		// The socket was closed on purpose.
	default:
		// Not fatal by itself: a subscription that ends is renewed.
		s.log.Log(context.Background(), s.errLevel, "rtnetlink subscription error", "err", err)
	}
}

// run hands every update to handle until stop is closed, renewing the
// subscription (ch, done from open) when it ends and calling renewed after
// each renewal, since events may have been missed.
func (s *linkSubscription) run(ch chan netlink.LinkUpdate, done chan struct{}, handle func(netlink.LinkUpdate), renewed func()) {
	backoff := 100 * time.Millisecond
	for {
		select {
		case u, ok := <-ch:
			if ok {
				handle(u)
				continue
			}
			close(done)
			for {
				var err error
				if ch, done, err = s.open(); err == nil {
					backoff = 100 * time.Millisecond
					break
				}
				s.log.Warn("rtnetlink resubscribe failed", "err", err, "retry", backoff)
				select {
				case <-s.stop:
					return
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
			}
			if renewed != nil {
				renewed()
			}
		case <-s.stop:
			close(done)
			for range ch {
				// Drain so the library's receive goroutine can exit.
			}
			return
		}
	}
}
