package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
)

// TestLoadRefusesNonRegular: Load reads only a regular file of at most
// 1 MiB, and never blocks on a FIFO (no writer) or a device.
func TestLoadRefusesNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.toml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.toml")
	if err := os.WriteFile(big, []byte("# "+strings.Repeat("x", config.MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{fifo, "not a regular file (a named pipe)"},
		{"/dev/zero", "not a regular file (a character device)"},
		{dir, "not a regular file (a directory)"},
		{big, "the limit for a configuration file"},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := config.Load(c.path)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Load(%s) = %v, want an error saying %q", c.path, err, c.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) blocks", c.path)
		}
	}
	if _, err := config.Load(filepath.Join(dir, "nope.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want os.ErrNotExist", err)
	}
}

// TestRuntimeDir: [control] runtime_dir is an absolute path, default
// /run/ulagg, and survives Marshal.
func TestRuntimeDir(t *testing.T) {
	c, err := config.Parse("t.toml", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Control.RuntimeDirOrDefault(); got != "/run/ulagg" {
		t.Errorf("default runtime dir %q, want /run/ulagg", got)
	}
	c, err = config.Parse("t.toml", []byte("[control]\nruntime_dir = \"/var/run/u2\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Control.RuntimeDirOrDefault() != "/var/run/u2" {
		t.Errorf("runtime dir %q", c.Control.RuntimeDir)
	}
	b, err := config.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `runtime_dir = "/var/run/u2"`) {
		t.Errorf("Marshal lost runtime_dir:\n%s", b)
	}
	_, err = config.Parse("t.toml", []byte("[control]\nruntime_dir = \"relative\"\n"))
	if err == nil || !strings.Contains(err.Error(), "control.runtime_dir") {
		t.Errorf("a relative runtime_dir: %v, want an error naming control.runtime_dir", err)
	}
}
