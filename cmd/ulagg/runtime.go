package main

import (
	"log/slog"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/stack"
)

// runtime holds what runs next to the appliance: reloads now; the control
// socket and metrics listener join it.
type runtime struct {
	a    *stack.Appliance
	file string
	log  *slog.Logger
	stop chan struct{}
}

func startRuntime(a *stack.Appliance, file string, log *slog.Logger) (*runtime, error) {
	return &runtime{a: a, file: file, log: log, stop: make(chan struct{})}, nil
}

// reload re-reads the file and applies only the difference; a file with
// errors is refused and the running configuration stays.
func (rt *runtime) reload() error {
	cfg, err := config.Load(rt.file)
	if err != nil {
		rt.log.Error("reload refused: the file has errors; the running configuration stays", "file", rt.file, "err", err)
		return err
	}
	if err := rt.a.Reload(cfg); err != nil {
		rt.log.Error("reload applied with errors", "file", rt.file, "err", err)
		return err
	}
	rt.log.Info("reloaded", "file", rt.file)
	return nil
}

func (rt *runtime) done() <-chan struct{} { return rt.stop }

func (rt *runtime) close() {}
