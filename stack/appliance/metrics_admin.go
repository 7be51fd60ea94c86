package appliance

import "github.com/ulagg/ulagg/lagg"

// Operator-facing port metrics: link failures (Linux bonding's "Link
// Failure Count") and the administrative disable.
var (
	dPortLinkFailures = desc("port_link_failures_total", "Times the port's link went down since it joined the lagg.", "lagg", "port")
	dPortDisabled     = desc("port_disabled", "1 if the operator disabled the port (laggport IF -active).", "lagg", "port")
)

func init() { allDescs = append(allDescs, dPortLinkFailures, dPortDisabled) }

func portAdminMetrics(m metricSink, lagg string, p lagg.PortStatus) {
	m.counter(dPortLinkFailures, float64(p.LinkFailures), lagg, p.Name)
	m.gauge(dPortDisabled, b2f(p.Disabled), lagg, p.Name)
}
