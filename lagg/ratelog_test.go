package lagg_test

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
)

// TestLinkFlapLogBounded: a link flapping 500 times (a peer can do that)
// writes a handful of lines, not a thousand.
func TestLinkFlapLogBounded(t *testing.T) {
	var out testkit.SyncBuffer
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
