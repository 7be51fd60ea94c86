package appliance

import (
	"fmt"
	"strings"
	"time"

	"github.com/ulagg/ulagg/lagg"
)

// disabledMark follows the flags of a port the operator disabled.
func disabledMark(p lagg.PortStatus) string {
	if p.Disabled {
		return " <DISABLED>"
	}
	return ""
}

// formatPortAdmin is -v's line of a port's link history: link failures and
// the last change, as /proc/net/bonding shows them, once the port lost its
// link or was disabled (JSON and metrics always have them).
func formatPortAdmin(b *strings.Builder, p lagg.PortStatus) {
	if p.LinkFailures == 0 && !p.Disabled {
		return
	}
	fmt.Fprintf(b, "\t\t\tlink failures %d", p.LinkFailures)
	if !p.LastChange.IsZero() {
		fmt.Fprintf(b, ", last change %s (%s ago)", p.LastChange.UTC().Format(time.RFC3339), time.Since(p.LastChange).Round(time.Second))
	}
	if p.Disabled {
		b.WriteString(", disabled by the operator")
	}
	b.WriteByte('\n')
}
