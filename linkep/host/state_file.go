package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Crash-safe host state. Before a port changes anything on its host
// interface (MTU, admin state) it records the interface's original value in
// a state file under the runtime directory, written atomically (temp file,
// fsync, rename, fsync of the directory). A clean close puts the interface
// back and removes the file; after kill -9 the file stays, and the next port
// to open that interface (it holds the owner claim, so the writer is gone)
// puts back what the file says before it reads the "original" values.
//
// A file is keyed by the network namespace (device and inode of its nsfs
// file) and the ifindex, and records the namespace's cookie, the boot and the
// interface name too: an entry is applied only if all of them still match,
// so an interface renamed or recreated, or a namespace whose inode number
// was reused, is never changed on the strength of an old file.

// DefaultRuntimeDir is where ports keep their state files when no runtime
// directory is given.
const DefaultRuntimeDir = "/run/ulagg"

// stateSubdir holds the ports' files under the runtime directory.
const stateSubdir = "host"

// hostState is one state file: what a port changed on its interface and
// what to put back.
type hostState struct {
	Version     int    `json:"version"`
	BootID      string `json:"boot_id,omitempty"`
	NetnsDev    uint64 `json:"netns_dev"`
	NetnsIno    uint64 `json:"netns_ino"`
	NetnsCookie uint64 `json:"netns_cookie,omitempty"`
	Ifindex     int    `json:"ifindex"`
	Name        string `json:"name"`
	PID         int    `json:"pid"`
	// OrigMTU is the interface's MTU before the port changed it.
	OrigMTU uint32 `json:"orig_mtu"`
	// SetMTU is the MTU the port set or is about to set, 0 if none: it
	// is put back to OrigMTU only while it is still in place.
	SetMTU uint32 `json:"set_mtu,omitempty"`
	// PrevMTU is the MTU the port had set before SetMTU, while changing
	// from one to the other: either may be in place after a crash.
	PrevMTU uint32 `json:"prev_mtu,omitempty"`
	// BroughtUp: the interface was admin down and the port set it up.
	BroughtUp bool `json:"brought_up,omitempty"`
	// DisabledIPv6: the port set net.ipv6.conf.IF.disable_ipv6 from 0 to
	// 1 while a member (ipv6_sysctl.go).
	DisabledIPv6 bool `json:"disabled_ipv6,omitempty"`
}

const stateVersion = 1

// changed says whether the entry records a change to undo.
func (s *hostState) changed() bool {
	return s.BroughtUp || s.DisabledIPv6 || s.ours(s.SetMTU) || s.ours(s.PrevMTU)
}

// ours says whether mtu, found on the interface, is one the port set and
// so one to put back to OrigMTU.
func (s *hostState) ours(mtu uint32) bool {
	return mtu != 0 && mtu != s.OrigMTU && (mtu == s.SetMTU || mtu == s.PrevMTU)
}

// sameInterface says whether s was written for the interface described by
// o (its identity fields).
func (s *hostState) sameInterface(o *hostState) bool {
	return s.Version == stateVersion &&
		s.NetnsDev == o.NetnsDev && s.NetnsIno == o.NetnsIno &&
		(s.BootID == "" || o.BootID == "" || s.BootID == o.BootID) &&
		(s.NetnsCookie == 0 || o.NetnsCookie == 0 || s.NetnsCookie == o.NetnsCookie) &&
		s.Ifindex == o.Ifindex && s.Name == o.Name
}

// stateFile is a port's state file. The port holds the interface's owner
// claim, so no other writer exists.
type stateFile struct {
	path string

	mu sync.Mutex
	// +checklocks:mu
	cur hostState // what the file says, if onDisk
	// +checklocks:mu
	onDisk bool
}

// statePath is the file of interface ifindex in the namespace with key k.
func statePath(dir string, k nsKey, ifindex int) string {
	return filepath.Join(dir, stateSubdir, fmt.Sprintf("netns-%d-%d-if%d.json", k.dev, k.ino, ifindex))
}

// openStateDir creates dir/host (0700) if needed.
func openStateDir(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("runtime directory %q is not an absolute path", dir)
	}
	if err := os.MkdirAll(filepath.Join(dir, stateSubdir), 0o700); err != nil {
		return fmt.Errorf("runtime directory: %w", err)
	}
	return nil
}

// readState reads the file at path; ok is false if there is none.
func readState(path string) (st hostState, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return hostState{}, false, nil
	}
	if err != nil {
		return hostState{}, false, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return hostState{}, false, fmt.Errorf("%s: %w", path, err)
	}
	return st, true, nil
}

// update applies fn to a copy of the entry and writes it, or removes the
// file when the entry records nothing to undo. The entry changes only once
// it is on disk.
func (f *stateFile) update(fn func(*hostState)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.cur
	fn(&next)
	if !next.changed() {
		if err := f.removeLocked(); err != nil {
			return err
		}
		f.cur = next
		return nil
	}
	if f.onDisk && next == f.cur {
		return nil
	}
	b, err := json.Marshal(&next)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(f.path, append(b, '\n')); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	f.cur, f.onDisk = next, true
	return nil
}

// remove deletes the file; the entry is forgotten.
func (f *stateFile) remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.removeLocked()
}

// +checklocks:f.mu
func (f *stateFile) removeLocked() error {
	if err := removeFileSync(f.path); err != nil {
		return err
	}
	f.onDisk = false
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, fsynced, renamed over path, and the directory fsynced, so that
// after a crash path holds either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(name)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(name, path); err != nil {
		return err
	}
	ok = true
	return syncDir(dir)
}

// removeFileSync removes path (a missing file is fine) and syncs its
// directory.
func removeFileSync(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("state file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

var bootID = sync.OnceValue(func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
})

// netnsCookie is the cookie of the namespace fd's socket lives in (unique
// for the boot, unlike the nsfs inode number), or 0 if the kernel cannot
// tell (before Linux 5.14).
func netnsCookie(fd int) uint64 {
	c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0
	}
	return c
}
