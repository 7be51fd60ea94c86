package ratelog_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/ratelog"
)

type clock struct {
	mu sync.Mutex
	// +checklocks:mu
	t time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestFloodIsBoundedAndSummarised(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1e9, 0)}
	h := ratelog.New(slog.NewTextHandler(&out, nil), ratelog.Options{Window: 10 * time.Second, Burst: 3, Now: c.now})
	log := slog.New(h).With("lagg", "lagg0")
	for range 1000 {
		log.Info("port link changed", "port", "p0", "link", "down")
	}
	log.Info("port link changed", "port", "p1", "link", "down") // another port: its own budget
	if got := strings.Count(out.String(), "port=p0"); got != 3 {
		t.Errorf("p0 lines during the flood: got %d, want 3\n%s", got, out.String())
	}
	if got := strings.Count(out.String(), "port=p1"); got != 1 {
		t.Errorf("p1 lines: got %d, want 1", got)
	}
	c.add(11 * time.Second)
	log.Info("port link changed", "port", "p0", "link", "up")
	s := out.String()
	if !strings.Contains(s, "suppressed=997") || !strings.Contains(s, "similar lines suppressed") {
		t.Errorf("no summary of the 997 suppressed lines:\n%s", s)
	}
	if !strings.HasSuffix(strings.TrimSpace(s), "link=up") {
		t.Errorf("the first line of the new window was not written last:\n%s", s)
	}
}

func TestFlushAndKindBound(t *testing.T) {
	var out bytes.Buffer
	c := &clock{t: time.Unix(1e9, 0)}
	h := ratelog.New(slog.NewTextHandler(&out, nil), ratelog.Options{Burst: 1, MaxKinds: 8, Now: c.now})
	log := slog.New(h)
	for i := range 100 {
		log.Warn("x", "port", string(rune('a'+i%26))+"0") // many kinds: memory stays bounded
	}
	log.Warn("y")
	log.Warn("y")
	h.Flush(context.Background())
	if !strings.Contains(out.String(), `msg="y (similar lines suppressed)" suppressed=1`) {
		t.Errorf("Flush wrote no summary for y:\n%s", out.String())
	}
}
