package appliance

import (
	"sync/atomic"
	"time"
)

// configStats counts configuration changes for the metrics: reloads (file
// or API; SIGHUP, `ulagg reload`) and `ulagg ifconfig` changes, each as
// applied or refused, and when a reload last succeeded. The initial load
// counts as the first successful reload, as Prometheus' own
// prometheus_config_last_reload_success_timestamp_seconds does.
type configStats struct {
	reloadsOK, reloadsFailed   atomic.Uint64
	ifconfigOK, ifconfigFailed atomic.Uint64
	lastReloadOK               atomic.Bool
	lastReloadOKAt             atomic.Int64 // unix nanoseconds
}

// loaded records the initial configuration, applied.
func (s *configStats) loaded() {
	s.lastReloadOK.Store(true)
	s.lastReloadOKAt.Store(time.Now().UnixNano())
}

// reloaded records a reload (not a dry run) that applied (err nil) or was
// refused.
func (s *configStats) reloaded(err error) {
	if err != nil {
		s.reloadsFailed.Add(1)
		s.lastReloadOK.Store(false)
		return
	}
	s.reloadsOK.Add(1)
	s.lastReloadOK.Store(true)
	s.lastReloadOKAt.Store(time.Now().UnixNano())
}

// ifconfig records an `ulagg ifconfig` change, applied or refused.
func (s *configStats) ifconfig(err error) {
	if err != nil {
		s.ifconfigFailed.Add(1)
		return
	}
	s.ifconfigOK.Add(1)
}

var (
	dConfigReloads  = desc("config_reloads_total", "Configuration reloads (SIGHUP, ulagg reload), by result: success, or failure (not valid, or a change failed and was rolled back).", "result")
	dConfigLastOK   = desc("config_last_reload_successful", "1 if the last configuration reload (or the initial load) succeeded.")
	dConfigLastOKAt = desc("config_last_reload_success_timestamp_seconds", "When the configuration was last loaded or reloaded successfully (Unix time).")
	dConfigIfconfig = desc("config_ifconfig_changes_total", "ulagg ifconfig changes, by result: success, or failure (refused; nothing changed).", "result")
)

const (
	resultSuccess = "success"
	resultFailure = "failure"
)

func (s *configStats) collect(m metricSink) {
	m.counter(dConfigReloads, float64(s.reloadsOK.Load()), resultSuccess)
	m.counter(dConfigReloads, float64(s.reloadsFailed.Load()), resultFailure)
	m.gauge(dConfigLastOK, b2f(s.lastReloadOK.Load()))
	m.gauge(dConfigLastOKAt, float64(s.lastReloadOKAt.Load())/1e9)
	m.counter(dConfigIfconfig, float64(s.ifconfigOK.Load()), resultSuccess)
	m.counter(dConfigIfconfig, float64(s.ifconfigFailed.Load()), resultFailure)
}
