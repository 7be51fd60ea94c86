package appliance

import (
	"os"
	"runtime/debug"

	"github.com/ulagg/ulagg/config"
)

// ApplyMemoryLimit sets the Go runtime's soft memory limit
// (debug.SetMemoryLimit) to l's, the default if unset, unless the
// GOMEMLIMIT environment variable is set: the runtime has applied that one
// already and it wins. It returns the limit in force (math.MaxInt64 for
// none) and where it comes from: "GOMEMLIMIT" or "limits.memory_mb".
//
// Near the limit the garbage collector works harder (up to half the CPU)
// rather than let the heap grow: what a flood makes the appliance
// allocate is given back soon, so that a peak does not stay as RSS.
func ApplyMemoryLimit(l config.Limits) (limit int64, source string) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	}
	limit = l.MemoryLimit()
	debug.SetMemoryLimit(limit)
	return limit, "limits.memory_mb"
}
