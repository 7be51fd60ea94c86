package main

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/stack/appliance"
)

// runtime holds what runs next to the appliance: reloads (SIGHUP and the
// control socket share one), the control socket and the metrics listener.
type runtime struct {
	log     *slog.Logger
	stop    chan struct{}
	ctl     *appliance.ControlServer
	reloads *reloader // runs every reload, off the signal path
	// sd tells systemd about reloads (sdnotify.go); nil outside systemd's
	// startSystemd.
	sd atomic.Pointer[sdNotifier]

	// fileCfg is the file as last loaded; it tells the kind (tap) of a
	// port that ifconfig adds after the file configured it. Atomic because
	// kindOf runs under the appliance's lock, which reload takes too.
	fileCfg atomic.Pointer[config.Config]

	mu sync.Mutex // serialises reloads and metrics listener changes
	// +checklocks:mu
	a *appliance.Appliance
	// +checklocks:mu
	file string
	// +checklocks:mu
	metrics *appliance.MetricsServer
	// +checklocks:mu
	metricsAddr string
	// +checklocks:mu
	closed bool
}

func startRuntime(a *appliance.Appliance, file string, log *slog.Logger) (*runtime, error) {
	rt := &runtime{a: a, file: file, log: log, stop: make(chan struct{})}
	rt.reloads = newReloader(rt.reloadNow)
	cfg := a.Config()
	// appliance.New creates every lagg up; the file's admin state (down = true)
	// is applied here.
	if file != "" {
		fc, err := config.Load(file)
		if err != nil {
			rt.reloads.stop()
			return nil, err
		}
		rt.fileCfg.Store(fc)
		if err := a.ApplyAdmin(fc); err != nil {
			rt.reloads.stop()
			return nil, err
		}
	}
	ctl, err := appliance.ListenControl(a, appliance.ControlOptions{
		Path:       cfg.Control.Socket,
		ConfigFile: file,
		Reload:     rt.reloadControl,
		KindOf:     rt.kindOf,
		Logger:     log,
		Group:      cfg.Control.Group,
	})
	if err != nil {
		rt.reloads.stop()
		return nil, err
	}
	rt.ctl = ctl
	rt.mu.Lock()
	err = rt.setMetricsLocked(cfg.Metrics.Listen)
	rt.mu.Unlock()
	if err != nil {
		ctl.Close()
		rt.reloads.stop()
		return nil, err
	}
	return rt, nil
}

// kindOf is the kind the configuration file gives a port, or "" (afpacket).
func (rt *runtime) kindOf(name string) string {
	fc := rt.fileCfg.Load()
	if fc == nil {
		return ""
	}
	for _, l := range fc.Laggs {
		for _, p := range l.Ports {
			if p.Name == name {
				return p.Kind
			}
		}
	}
	return ""
}

// requestReload asks for a reload and returns at once: SIGHUP's entry
// point. The outcome is logged.
func (rt *runtime) requestReload() { rt.reloads.request() }

// reload runs a reload on the reload goroutine and waits for its outcome,
// at most reloadTimeout: the control socket's entry point.
func (rt *runtime) reload() error { return rt.reloads.reload(reloadTimeout) }

// reloadNow re-reads the file and applies only the difference; a file with
// errors (or that is not a regular file of at most 1 MiB) is refused and
// the running configuration stays. It runs on the reload goroutine. It is
// SIGHUP's reload: runtime changes that were never saved are discarded
// (the appliance logs each one).
func (rt *runtime) reloadNow() error {
	_, err := rt.reloadWith(appliance.ReloadOptions{Force: true})
	return err
}

// reloadControl is the control socket's reload (`ulagg reload [--force]
// [--dry-run]`, `ulagg diff`): reloadWith, waited for at most
// reloadTimeout.
func (rt *runtime) reloadControl(o appliance.ReloadOptions) (appliance.ReloadResult, error) {
	type result struct {
		res appliance.ReloadResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := rt.reloadWith(o)
		done <- result{res, err}
	}()
	t := time.NewTimer(reloadTimeout)
	defer t.Stop()
	select {
	case r := <-done:
		return r.res, r.err
	case <-t.C:
		return appliance.ReloadResult{}, fmt.Errorf("reload: not done within %v (it still runs; see the log)", reloadTimeout)
	}
}

// reloadWith re-reads the file and applies it as o says: all of it or
// nothing; without o.Force it refuses to undo runtime changes never saved;
// with o.DryRun it only reports.
func (rt *runtime) reloadWith(o appliance.ReloadOptions) (_ appliance.ReloadResult, err error) {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	if rt.file == "" {
		return appliance.ReloadResult{}, errors.New("reload: ulagg runs without a configuration file")
	}
	if sd := rt.sd.Load(); sd != nil && !o.DryRun {
		sd.reloading()
		defer func() { sd.reloaded(err) }()
	}
	cfg, err := config.Load(rt.file)
	if err != nil {
		rt.log.Error("reload refused: the file has errors; the running configuration stays", "file", rt.file, "err", err)
		return appliance.ReloadResult{}, fmt.Errorf("reload refused, the running configuration stays:\n%s", indent(err.Error()))
	}
	if o.DryRun {
		return rt.a.ReloadConfigWith(cfg, o)
	}
	res, err := rt.a.ReloadConfigWith(cfg, o)
	if err != nil {
		rt.log.Error("reload refused; the running configuration stays", "file", rt.file, "err", err)
		return res, err
	}
	rt.fileCfg.Store(cfg)
	var errs []error
	if err := rt.setMetricsLocked(cfg.Metrics.Listen); err != nil {
		errs = append(errs, err)
	}
	if rt.ctl != nil && cfg.Control.Socket != rt.ctl.Path() {
		rt.log.Warn("the control socket moves at the next start", "now", rt.ctl.Path(), "file", cfg.Control.Socket)
	}
	if rt.ctl != nil && cfg.Control.Group != rt.ctl.Group() {
		rt.log.Warn("the control socket's group changes at the next start", "now", rt.ctl.Group(), "file", cfg.Control.Group)
	}
	if now := rt.a.Config().Control.RuntimeDirOrDefault(); cfg.Control.RuntimeDirOrDefault() != now {
		rt.log.Warn("the runtime directory moves at the next start", "now", now, "file", cfg.Control.RuntimeDirOrDefault())
	}
	if len(errs) == 0 {
		rt.log.Info("reloaded", "file", rt.file, "changes", len(res.Changes))
	}
	return res, errors.Join(errs...)
}

// setMetricsLocked starts, moves or stops the metrics listener.
//
// +checklocks:rt.mu
func (rt *runtime) setMetricsLocked(addr string) error {
	if rt.closed || addr == rt.metricsAddr {
		return nil
	}
	if rt.metrics != nil {
		if err := rt.metrics.Close(); err != nil {
			rt.log.Warn("metrics listener close", "err", err)
		}
		rt.metrics, rt.metricsAddr = nil, ""
	}
	if addr == "" {
		return nil
	}
	m, err := appliance.ListenMetrics(rt.a, addr, rt.log)
	if err != nil {
		return err
	}
	rt.metrics, rt.metricsAddr = m, addr
	return nil
}

func (rt *runtime) done() <-chan struct{} { return rt.stop }

// close stops the control socket (removing its file) and the metrics
// listener. It is idempotent.
func (rt *runtime) close() {
	// First, so that requests waiting for a reload are answered and the
	// control socket's connections end.
	rt.reloads.stop()
	rt.mu.Lock()
	if rt.closed {
		rt.mu.Unlock()
		return
	}
	rt.closed = true
	m := rt.metrics
	rt.metrics = nil
	rt.mu.Unlock()
	if rt.ctl != nil {
		if err := rt.ctl.Close(); err != nil {
			rt.log.Warn("control socket close", "err", err)
		}
	}
	if m != nil {
		if err := m.Close(); err != nil {
			rt.log.Warn("metrics listener close", "err", err)
		}
	}
}
