package lagg_test

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/ulagg/ulagg/lagg"
)

// syncBuffer is a bytes.Buffer for loggers on several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	// +checklocks:mu
	b bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestLinkFlapLogBounded: a link flapping 500 times (a peer can do that)
// writes a handful of lines, not a thousand.
func TestLinkFlapLogBounded(t *testing.T) {
	var out syncBuffer
	p := newPair(t, "failover", 2, func(side int, o *lagg.Options) {
		if side == 0 {
			o.Logger = slog.New(slog.NewTextHandler(&out, nil))
		}
	})
	for range 500 {
		p.wires[1].SetLinkUp(false)
		p.wires[1].SetLinkUp(true)
	}
	if got := strings.Count(out.String(), `msg="port link changed"`); got > 10 {
		t.Errorf("port link lines for 1000 link changes: got %d, want at most 10", got)
	}
}
