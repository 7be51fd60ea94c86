package appliance

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
)

// What captures and monitors share: both are long-running streams on a
// control connection that hold one of a few places, end when the client
// closes its side, and say why they ended.

// streamKind names a kind of stream that has its own count of places.
type streamKind int

const (
	streamCapture streamKind = iota // control_capture.go
	streamMonitor                   // control_monitor.go
)

// streamCount is the field that counts the running streams of kind k.
//
// +checklocks:s.mu
func (s *ControlServer) streamCount(k streamKind) *int {
	if k == streamCapture {
		return &s.captures
	}
	return &s.monitors
}

// takeStream takes one of the max places of kind k for a stream of the
// command what; release gives it back. All taken is an error for the
// client, which can stop one of its streams and try again.
func (s *ControlServer) takeStream(what string, k streamKind, max int) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.streamCount(k)
	if *n >= max {
		return nil, fmt.Errorf("%s: %d %ss are running, the most ulagg serves at once; stop one first", what, max, what)
	}
	*n++
	return func() {
		s.mu.Lock()
		*s.streamCount(k)--
		s.mu.Unlock()
	}, nil
}

// clientGone returns a channel closed once the client closes (or
// half-closes) c. The client sends nothing after its request, so a read
// that returns means it is done.
func (s *ControlServer) clientGone(c net.Conn) <-chan struct{} {
	gone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(io.Discard, c)
		close(gone)
	}()
	return gone
}

// streamEnd says why a stream's loop ended: err nil when it sent all the
// client asked for, io.EOF when the client closed, net.ErrClosed when
// the server stops, a write deadline when the client stopped reading.
func streamEnd(err error) string {
	switch {
	case err == nil:
		return "count reached"
	case err == io.EOF:
		return "client closed"
	case err == net.ErrClosed:
		return "server stopping"
	case errors.Is(err, os.ErrDeadlineExceeded):
		return "client stopped reading"
	}
	return err.Error()
}
