package appliance

import (
	"fmt"
	"strings"

	"github.com/ulagg/ulagg/lagg"
)

// monitorMark is what a port's line adds while the link monitor holds it
// down: " monitor down (arp 10.0.0.1 unanswered 3×)".
func monitorMark(p lagg.PortStatus) string {
	if m := p.Monitor; m != nil && !m.Up {
		return fmt.Sprintf(" monitor down (%s)", m.Reason)
	}
	return ""
}

// formatMonitor is the lagg's link monitor line, under laggproto:
// "laggmonitor: arp 10.0.0.1 interval 100ms missed 3 validate all require any".
func formatMonitor(b *strings.Builder, st LaggStatus) {
	if st.Monitor != nil {
		fmt.Fprintf(b, "\t\tlaggmonitor: %s\n", st.Monitor)
	}
}

// formatPortMonitor is -v's line of a port's link monitor.
func formatPortMonitor(b *strings.Builder, p lagg.PortStatus) {
	m := p.Monitor
	if m == nil {
		return
	}
	state := "up"
	if !m.Up {
		state = "down (" + m.Reason + ")"
	}
	fmt.Fprintf(b, "\t\t\tmonitor %s, missed %d, failures %d, probes %d, replies %d\n", state, m.Missed, m.Failures, m.Probes, m.Replies)
}
