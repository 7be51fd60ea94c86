package testkit_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/ulagg/ulagg/internal/testkit"
)

// TestSyncBuffer: concurrent writers lose no line (run with -race), and
// Bytes is a copy the next Write does not change.
func TestSyncBuffer(t *testing.T) {
	var b testkit.SyncBuffer
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				_, _ = b.Write([]byte("line\n"))
			}
		})
	}
	wg.Wait()
	if n := strings.Count(b.String(), "line\n"); n != 800 {
		t.Errorf("%d lines, want 800", n)
	}
	snap := b.Bytes()
	_, _ = b.Write([]byte("more"))
	if len(snap) != 800*5 || strings.Contains(string(snap), "more") {
		t.Errorf("Bytes changed by a later Write: %d bytes", len(snap))
	}
}
