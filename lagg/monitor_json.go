package lagg

// MonitorJSON is a lagg's link monitor settings as JSON (status.schema.json
// "monitor").
type MonitorJSON struct {
	ARPTargets []string `json:"arp_targets"`
	NSTargets  []string `json:"ns_targets"`
	IntervalMs int64    `json:"interval_ms"`
	MissedMax  int      `json:"missed_max"`
	Validate   string   `json:"validate"`
	Require    string   `json:"require"`
}

// PortMonitorJSON is a port's link monitor state as JSON ("port_monitor").
type PortMonitorJSON struct {
	Up       bool   `json:"up"`
	Reason   string `json:"reason,omitempty"`
	Missed   int    `json:"missed"`
	Failures uint64 `json:"failures"`
	Probes   uint64 `json:"probes"`
	Replies  uint64 `json:"replies"`
}

// JSON returns m as JSON, nil when the monitor is off.
func (m *MonitorOptions) JSON() *MonitorJSON {
	if !m.Enabled() {
		return nil
	}
	j := &MonitorJSON{ARPTargets: []string{}, NSTargets: []string{}, IntervalMs: m.Interval.Milliseconds(),
		MissedMax: m.MissedMax, Validate: string(m.Validate), Require: string(m.Require)}
	for _, a := range m.ARPTargets {
		j.ARPTargets = append(j.ARPTargets, a.String())
	}
	for _, a := range m.NSTargets {
		j.NSTargets = append(j.NSTargets, a.String())
	}
	return j
}

// JSON returns m as JSON, nil for nil.
func (m *PortMonitorStatus) JSON() *PortMonitorJSON {
	if m == nil {
		return nil
	}
	return &PortMonitorJSON{Up: m.Up, Reason: m.Reason, Missed: m.Missed, Failures: m.Failures, Probes: m.Probes, Replies: m.Replies}
}
