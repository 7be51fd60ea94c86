package appliance_test

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/stack/appliance"
)

// TestApplyMemoryLimit: limits.memory_mb (default 96) sets the runtime's
// soft memory limit, unless GOMEMLIMIT is set.
func TestApplyMemoryLimit(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	if v, ok := os.LookupEnv("GOMEMLIMIT"); ok {
		defer os.Setenv("GOMEMLIMIT", v)
	} else {
		defer os.Unsetenv("GOMEMLIMIT")
	}

	os.Unsetenv("GOMEMLIMIT")
	for _, c := range []struct {
		limits config.Limits
		want   int64
	}{
		{config.Limits{}, 96 << 20},
		{config.Limits{MemoryMB: 512}, 512 << 20},
	} {
		got, from := appliance.ApplyMemoryLimit(c.limits)
		if got != c.want || from != "limits.memory_mb" || debug.SetMemoryLimit(-1) != c.want {
			t.Errorf("%+v: %d from %s (runtime %d), want %d", c.limits, got, from, debug.SetMemoryLimit(-1), c.want)
		}
	}

	// The runtime read GOMEMLIMIT at start; here it is as if it had.
	debug.SetMemoryLimit(300 << 20)
	os.Setenv("GOMEMLIMIT", "300MiB")
	got, from := appliance.ApplyMemoryLimit(config.Limits{MemoryMB: 64})
	if got != 300<<20 || from != "GOMEMLIMIT" || debug.SetMemoryLimit(-1) != 300<<20 {
		t.Errorf("with GOMEMLIMIT: %d from %s, want 300 MiB from GOMEMLIMIT", got, from)
	}
}
