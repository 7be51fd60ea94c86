package lagg_test

import (
	"os"
	"testing"

	"gvisor.dev/gvisor/pkg/refs"
)

// TestMain turns on gVisor's reference leak checker: every PacketBuffer
// created while the tests run must be released by the time they end, or the
// check panics and lists the leaked buffers.
func TestMain(m *testing.M) {
	refs.SetLeakMode(refs.LeaksPanic)
	code := m.Run()
	if code == 0 {
		refs.DoLeakCheck()
	}
	os.Exit(code)
}
