package appliance

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ulagg/ulagg/config"
)

// Ifconfig applies one `ulagg ifconfig` line to the running appliance: it
// computes the lagg's new configuration from the one in force, validated as
// a whole, and then creates, changes or destroys the lagg. A line that is
// refused, or whose change fails and is rolled back, leaves the running
// configuration as it was. kindOf is as for config.IfconfigCommand.Apply.
func (a *Appliance) Ifconfig(cmd *config.IfconfigCommand, kindOf func(string) string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("appliance is closed")
	}
	next, err := cmd.Apply(a.cfg, kindOf)
	if err != nil {
		return err
	}
	old, want := a.cfg.Lagg(cmd.Lagg), next.Lagg(cmd.Lagg)
	switch {
	case old == nil && want == nil:
		return nil
	case want == nil:
		a.destroyLaggLocked(cmd.Lagg)
		return nil
	case old == nil:
		if err := a.createLaggLocked(*want); err != nil {
			return err
		}
	default:
		if err := a.applyLaggLocked(*want); err != nil {
			return err
		}
	}
	return a.setAdminLocked(cmd.Lagg, want.Down)
}

// setAdminLocked brings lagg name's NIC administratively up or down
// (gVisor's EnableNIC/DisableNIC) and records it in the running config.
//
// +checklocks:a.mu
func (a *Appliance) setAdminLocked(name string, down bool) error {
	i, cur := a.ifaces[name], a.cfg.Lagg(name)
	if i == nil || cur == nil {
		return fmt.Errorf("%s does not exist", name)
	}
	if down {
		if err := a.s.DisableNIC(i.nic); err != nil {
			return fmt.Errorf("%s: disable NIC: %s", name, err)
		}
	} else if err := a.s.EnableNIC(i.nic); err != nil {
		return fmt.Errorf("%s: enable NIC: %s", name, err)
	}
	if cur.Down != down {
		a.log.Info("lagg admin state changed", "lagg", name, "admin", upDownWord(!down))
	}
	cur.Down = down
	return nil
}

func upDownWord(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

// ApplyAdmin applies the admin state (down = true) of every lagg of cfg
// that is running. New creates every lagg up; call this after it, and
// after Reload, which does not look at the admin state.
func (a *Appliance) ApplyAdmin(cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, lc := range cfg.Laggs {
		if a.ifaces[lc.Name] != nil {
			errs = append(errs, a.setAdminLocked(lc.Name, lc.Down))
		}
	}
	return errors.Join(errs...)
}

// ReloadConfig is Reload followed by ApplyAdmin: the whole of next,
// changing only what differs. A next that does not validate is refused and
// nothing changes.
func (a *Appliance) ReloadConfig(next *config.Config) error {
	if err := next.Validate(); err != nil {
		return err
	}
	return errors.Join(a.Reload(next), a.ApplyAdmin(next))
}

// ReloadFile reads the configuration file at path and applies the
// difference (ReloadConfig). A file with errors is refused and the running
// configuration stays in force.
func (a *Appliance) ReloadFile(path string) error {
	cfg, err := config.Load(path)
	if err != nil {
		return fmt.Errorf("reload refused, the running configuration stays: %w", err)
	}
	return a.ReloadConfig(cfg)
}

// SaveFile writes the running configuration, runtime changes included, to
// path as TOML. It replaces the file atomically (a temporary file in the
// same directory, synced, then renamed over it), keeping the old file's
// permissions; comments in the old file are not kept.
func (a *Appliance) SaveFile(path string) error {
	data, err := config.Marshal(a.Config())
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return writeFileAtomic(path, data)
}

func writeFileAtomic(path string, data []byte) (err error) {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	// Make the rename itself durable.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
