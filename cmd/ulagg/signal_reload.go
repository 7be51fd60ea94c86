package main

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Reloads run off the signal path: SIGHUP and `ulagg reload` only request
// one, and a goroutine of their own does the work, one reload at a time. So
// the signal loop never blocks (SIGTERM is always seen), and a reload that
// hangs holds up only the requests waiting for it, each for at most
// reloadTimeout.

// reloadTimeout bounds how long `ulagg reload` waits for its reload.
const reloadTimeout = 10 * time.Second

// reloader serialises reloads on one goroutine. Requests made while a
// reload runs are served together by the next one, which reads the file
// anew.
type reloader struct {
	run  func() error // the reload itself
	kick chan struct{}
	quit chan struct{}
	done chan struct{}

	mu sync.Mutex
	// +checklocks:mu
	waiters []chan error
	// +checklocks:mu
	stopped bool
}

func newReloader(run func() error) *reloader {
	r := &reloader{run: run, kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	go r.routine()
	return r
}

func (r *reloader) routine() {
	defer close(r.done)
	for {
		select {
		case <-r.quit:
			return
		case <-r.kick:
		}
		r.mu.Lock()
		waiters := r.waiters
		r.waiters = nil
		r.mu.Unlock()
		err := r.run()
		for _, w := range waiters {
			w <- err // buffered
		}
	}
}

// request asks for a reload and returns at once (SIGHUP).
func (r *reloader) request() {
	select {
	case r.kick <- struct{}{}:
	default: // one is pending already
	}
}

// reload asks for a reload and waits for its outcome, at most timeout.
func (r *reloader) reload(timeout time.Duration) error {
	w := make(chan error, 1)
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return errors.New("reload: ulagg is stopping")
	}
	r.waiters = append(r.waiters, w)
	r.mu.Unlock()
	r.request()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-w:
		return err
	case <-t.C:
		return fmt.Errorf("reload: not done within %v (a reload still runs; see the log)", timeout)
	case <-r.quit:
		return errors.New("reload: ulagg is stopping")
	}
}

// stop ends the goroutine once the reload in progress, if any, returns; it
// does not wait for it. Waiting requests are answered at once.
func (r *reloader) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.stopped {
		r.stopped = true
		close(r.quit)
	}
}
