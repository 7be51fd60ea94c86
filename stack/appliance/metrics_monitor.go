package appliance

import "github.com/ulagg/ulagg/lagg"

// Link monitor metrics ([lagg.monitor]); ports of a lagg without a monitor
// have none.
var (
	dPortMonitorUp       = desc("port_monitor_up", "1 while the link monitor's probes through the port are answered; 0: it counts as link down.", "lagg", "port")
	dPortMonitorFailures = desc("port_monitor_failures_total", "Times the link monitor took the port down (probes unanswered missed_max intervals in a row).", "lagg", "port")
	dPortMonitorProbes   = desc("port_monitor_probes_total", "Link monitor probes sent through the port.", "lagg", "port")
	dPortMonitorReplies  = desc("port_monitor_replies_total", "Valid replies to the port's own link monitor probes.", "lagg", "port")
)

func init() {
	allDescs = append(allDescs, dPortMonitorUp, dPortMonitorFailures, dPortMonitorProbes, dPortMonitorReplies)
}

func portMonitorMetrics(m metricSink, lagg string, p lagg.PortStatus) {
	mon := p.Monitor
	if mon == nil {
		return
	}
	m.gauge(dPortMonitorUp, b2f(mon.Up), lagg, p.Name)
	m.counter(dPortMonitorFailures, float64(mon.Failures), lagg, p.Name)
	m.counter(dPortMonitorProbes, float64(mon.Probes), lagg, p.Name)
	m.counter(dPortMonitorReplies, float64(mon.Replies), lagg, p.Name)
}
