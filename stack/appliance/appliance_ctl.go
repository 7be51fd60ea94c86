package appliance

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/lagg"
)

// Ifconfig applies one `ulagg ifconfig` line to the running appliance: it
// applies the line's words, in the user's order, to the configuration in
// force, validates the result as a whole, and reconciles the running
// appliance to it (reconcile.go): new ports are opened and checked before
// any running port is touched, so a refused line leaves no trace, and a
// change that fails later is rolled back. kindOf is as for
// config.IfconfigCommand.Apply. A port new to the configuration must
// exist; a configured port that is missing may be removed or
// re-prioritised.
func (a *Appliance) Ifconfig(cmd *config.IfconfigCommand, kindOf func(string) string) (err error) {
	defer func() { a.cfgStats.ifconfig(err) }() // metrics_config.go
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("appliance is closed")
	}
	next, err := cmd.Apply(a.cfg, kindOf)
	if err != nil {
		return err
	}
	rr, err := a.reconcileLocked(next, reconcileOptions{refuseNewMissing: true})
	if err == nil {
		a.configEvent("ifconfig "+cmd.String(), rr.Items)
	}
	return err
}

// ApplyAdmin applies the admin state (down = true) of every lagg of cfg
// that is running. New and reloads apply it with the rest; this is for
// callers that set it on its own.
func (a *Appliance) ApplyAdmin(cfg *config.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	next := a.cfg.Clone()
	for _, lc := range cfg.Laggs {
		if l := next.Lagg(lc.Name); l != nil {
			l.Down = lc.Down
		}
	}
	_, err := a.reconcileLocked(next, reconcileOptions{})
	return err
}

// ReloadOptions say how a reload treats runtime changes.
type ReloadOptions struct {
	// Force applies the file even when that undoes changes made at
	// runtime (ulagg ifconfig) and never saved; each is logged.
	Force bool
	// DryRun reports what the reload would change and applies nothing.
	DryRun bool
}

// ReloadResult says what a reload did, or would do.
type ReloadResult struct {
	// Changes lists the changes applied (or, with DryRun, that a reload
	// would apply), one line each, running configuration to file.
	Changes []string
	// Discarded lists the runtime changes, never saved, that the reload
	// undid (or would undo).
	Discarded []string
	// Missing lists the configured ports whose interface is missing after
	// the reload: "lagg0 port p0: why".
	Missing []string
	DryRun  bool
}

// Text is the result as `ulagg reload` and `ulagg diff` print it.
func (r ReloadResult) Text(file string) string {
	var b strings.Builder
	if r.DryRun {
		if len(r.Changes) == 0 {
			fmt.Fprintf(&b, "the running configuration and %s agree\n", file)
		} else {
			fmt.Fprintf(&b, "reloading %s would change:\n", file)
			for _, l := range r.Changes {
				b.WriteString("  " + l + "\n")
			}
		}
		if len(r.Discarded) > 0 {
			b.WriteString("runtime changes that are not saved, which it would undo (ulagg save keeps them):\n")
			for _, l := range r.Discarded {
				b.WriteString("  " + l + "\n")
			}
		}
		return b.String()
	}
	for _, l := range r.Changes {
		b.WriteString(l + "\n")
	}
	for _, l := range r.Discarded {
		b.WriteString("discarded runtime change: " + l + "\n")
	}
	for _, l := range r.Missing {
		b.WriteString("warning: missing, attached when its interface appears (`ip -br link` lists interfaces): " + l + "\n")
	}
	switch len(r.Changes) {
	case 0:
		fmt.Fprintf(&b, "reloaded %s: no changes\n", file)
	case 1:
		fmt.Fprintf(&b, "reloaded %s: 1 change\n", file)
	default:
		fmt.Fprintf(&b, "reloaded %s: %d changes\n", file, len(r.Changes))
	}
	return b.String()
}

// UnsavedError refuses a reload that would undo runtime changes never
// saved (ReloadOptions.Force overrides it).
type UnsavedError struct {
	Changes []string
}

func (e *UnsavedError) Error() string {
	var b strings.Builder
	b.WriteString("reload refused: it would undo these runtime changes, which are not saved:\n")
	for _, l := range e.Changes {
		b.WriteString("  " + l + "\n")
	}
	b.WriteString("`ulagg save` keeps them (then edit the file), `ulagg reload --force` discards them, `ulagg diff` shows what a reload changes")
	return b.String()
}

// ReloadConfig applies next as a whole, changing only what differs, all
// or nothing: a next that does not validate, or a change that fails, is
// refused and nothing changes. Runtime changes that it undoes are logged.
func (a *Appliance) ReloadConfig(next *config.Config) error {
	_, err := a.ReloadConfigWith(next, ReloadOptions{Force: true})
	return err
}

// ReloadConfigWith is ReloadConfig with options: without Force it refuses
// (UnsavedError) to undo runtime changes that were never saved; with
// DryRun it only reports.
func (a *Appliance) ReloadConfigWith(next *config.Config, o ReloadOptions) (_ ReloadResult, err error) {
	defer func() { // metrics_config.go
		if !o.DryRun {
			a.cfgStats.reloaded(err)
		}
	}()
	res := ReloadResult{DryRun: o.DryRun}
	if err := next.Validate(); err != nil {
		return res, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return res, errors.New("appliance is closed")
	}
	res.Discarded = config.Lines(config.Discarded(a.base, a.cfg, next))
	if o.DryRun {
		res.Changes = config.Lines(config.Items(a.cfg, next))
		return res, nil
	}
	if len(res.Discarded) > 0 && !o.Force {
		return res, &UnsavedError{Changes: res.Discarded}
	}
	rr, err := a.reconcileLocked(next, reconcileOptions{retryMissing: true, refuseMissing: a.strict})
	if err != nil {
		return ReloadResult{}, err
	}
	a.base = a.cfg.Clone()
	for _, l := range res.Discarded {
		a.log.Warn("reload discarded a runtime change that was never saved", "change", l)
	}
	res.Changes = append(config.Lines(rr.Items), rr.Attached...)
	res.Missing = rr.Missing
	a.configEvent("reload", rr.Items)
	for _, l := range res.Changes {
		a.log.Info("reload", "change", l)
	}
	for _, l := range res.Missing {
		a.log.Warn("configured port is missing; it is attached when its interface appears (`ip -br link` lists interfaces)", "port", l)
	}
	return res, nil
}

// ReloadFile reads the configuration file at path and applies it as
// ReloadConfig does (SIGHUP). A file with errors is refused and the
// running configuration stays in force.
func (a *Appliance) ReloadFile(path string) error {
	_, err := a.ReloadFileWith(path, ReloadOptions{Force: true})
	return err
}

// ReloadFileWith is ReloadFile with options (ReloadConfigWith).
func (a *Appliance) ReloadFileWith(path string, o ReloadOptions) (ReloadResult, error) {
	cfg, err := config.Load(path)
	if err != nil {
		if !o.DryRun {
			a.cfgStats.reloaded(err) // metrics_config.go
		}
		return ReloadResult{}, fmt.Errorf("reload refused, the running configuration stays: %w", err)
	}
	return a.ReloadConfigWith(cfg, o)
}

// SaveFile writes the running configuration to path (Save).
func (a *Appliance) SaveFile(path string) error {
	_, err := a.Save(path)
	return err
}

// SaveResult says what Save did.
type SaveResult struct {
	// Written is false when the file already held the running
	// configuration and was left alone (comments and all).
	Written bool
	// Path is the file written: path, or where its symbolic links lead.
	Path string
	// Backup is the previous file, kept as Path.bak ("" if there was none).
	Backup string
}

// Save writes the running configuration, runtime changes and missing ports
// included, to path as TOML, so that the next start or reload finds it:
//
//   - A file that already says the same is not rewritten.
//   - Symbolic links are followed: the file they lead to is replaced, the
//     links stay.
//   - The new file is written to a temporary file in the same directory,
//     synced and renamed over the old one, with the old one's mode, owner
//     and group; the old one stays as FILE.bak (a hard link, else a copy).
//   - TOML comments cannot be carried over (BurntSushi/toml does not keep
//     them): the file's leading block of comments is kept, the rest are
//     lost (FILE.bak has them).
func (a *Appliance) Save(path string) (SaveResult, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cfg := a.cfg.Clone()
	res, err := saveConfig(path, cfg)
	if err != nil {
		return res, fmt.Errorf("save: %w", err)
	}
	a.base = cfg
	if res.Written {
		a.events.publish(MonitorEvent{EventJSON: lagg.EventJSON{Time: time.Now(), Kind: EventConfigSaved, Detail: res.Path}})
	}
	return res, nil
}

func saveConfig(path string, cfg *config.Config) (SaveResult, error) {
	res := SaveResult{Path: path}
	data, err := config.Marshal(cfg)
	if err != nil {
		return res, err
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		res.Path = real
	} else if !errors.Is(err, fs.ErrNotExist) {
		return res, err
	}
	old, err := os.ReadFile(res.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	case err != nil:
		return res, err
	}
	var fi os.FileInfo
	if old != nil {
		if cur, err := config.Parse(res.Path, old); err == nil && len(config.Items(cur, cfg)) == 0 {
			return res, nil // it says so already: keep it as it is
		}
		data = append(leadingComments(old), data...)
		if fi, err = os.Stat(res.Path); err != nil {
			return res, err
		}
	}
	if err := writeFileAtomic(res.Path, data, fi); err != nil {
		return res, err
	}
	res.Written = true
	if fi != nil {
		res.Backup = res.Path + ".bak"
	}
	return res, nil
}

// leadingComments returns the block of comment and blank lines a TOML file
// starts with (its header), ending in a blank line, or nothing.
func leadingComments(data []byte) []byte {
	var head []byte
	for rest := data; len(rest) > 0; {
		line, after, _ := bytes.Cut(rest, []byte("\n"))
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			break
		}
		head = append(head, line...)
		head = append(head, '\n')
		rest = after
	}
	head = bytes.TrimRight(head, " \t\r\n")
	if len(head) == 0 {
		return nil
	}
	return append(head, '\n', '\n')
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, given old's mode, owner and group (0644 and the caller's if
// old is nil), synced, the old file kept as path.bak, then renamed over
// path.
func writeFileAtomic(path string, data []byte, old os.FileInfo) (err error) {
	mode := os.FileMode(0o644)
	uid, gid := -1, -1
	if old != nil {
		mode = old.Mode().Perm()
		if st, ok := old.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if uid >= 0 && (uid != os.Geteuid() || gid != os.Getegid()) {
		if err := f.Chown(uid, gid); err != nil {
			return fmt.Errorf("cannot keep the file's owner %d and group %d: %w", uid, gid, err)
		}
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if old != nil {
		if err := backup(path); err != nil {
			return fmt.Errorf("keeping the previous file as %s.bak: %w", path, err)
		}
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	// Make the rename itself durable.
	if d, derr := os.Open(dir); derr == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// backup makes path.bak the current path: a hard link (same owner, mode
// and content, no copy), else a copy.
func backup(path string) error {
	bak := path + ".bak"
	if err := os.Remove(bak); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Link(path, bak); err == nil {
		return nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if err := os.WriteFile(bak, data, fi.Mode().Perm()); err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = os.Lchown(bak, int(st.Uid), int(st.Gid))
	}
	return nil
}
