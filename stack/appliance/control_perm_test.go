package appliance_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ulagg/ulagg/stack/appliance"
)

// helperSocketEnv makes the test binary act as a control client (see
// TestControlHelperClient) when it is run again as another user.
const helperSocketEnv = "ULAGG_TEST_HELPER_SOCKET"

// TestControlHelperClient is not a test: run with helperSocketEnv set, it
// asks for the status and prints the outcome. Otherwise it does nothing
// (rather than skip: CI allows no skips).
func TestControlHelperClient(t *testing.T) {
	sock := os.Getenv(helperSocketEnv)
	if sock == "" {
		return
	}
	if _, err := appliance.ControlCall(sock, appliance.ControlRequest{Cmd: appliance.CmdStatus}); err != nil {
		fmt.Printf("HELPER-ERROR: %v\n", err)
		return
	}
	fmt.Println("HELPER-OK")
}

func TestControlSocketMode(t *testing.T) {
	r := newCtlRig(t, "", "failover")
	fi, err := os.Stat(r.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode: got %v, want a socket with 0600", fi.Mode())
	}
	di, err := os.Stat(filepath.Dir(r.sock))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("created socket directory mode: got %v, want 0700", di.Mode().Perm())
	}
	// A second server on the same path refuses to steal it.
	if _, err := appliance.ListenControl(r.a, appliance.ControlOptions{Path: r.sock, Logger: r.log}); err == nil || !strings.Contains(err.Error(), "another ulagg is already listening") {
		t.Errorf("second ListenControl: got %v, want another ulagg is already listening", err)
	}
	// A stale socket file (its server died) is replaced.
	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	srv, err := appliance.ListenControl(r.a, appliance.ControlOptions{Path: stale, Logger: r.log})
	if err != nil {
		t.Errorf("ListenControl over a stale socket: %v", err)
	} else {
		if _, err := appliance.ControlCall(stale, appliance.ControlRequest{Cmd: appliance.CmdStatus}); err != nil {
			t.Errorf("status on the replaced socket: %v", err)
		}
		srv.Close()
	}
	// A regular file is not touched.
	plain := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(plain, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := appliance.ListenControl(r.a, appliance.ControlOptions{Path: plain, Logger: r.log}); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("ListenControl over a regular file: got %v, want is not a socket", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Errorf("the regular file was changed")
	}
}

// TestControlSocketOtherUser runs a client as nobody: the 0600 socket
// refuses it (EACCES, with the client's explanation), and with the mode
// opened up, the server's SO_PEERCRED check refuses it.
func TestControlSocketOtherUser(t *testing.T) {
	dir, bin := otherUserDir(t, "ulagg-perm")
	r := newCtlRig(t, "", "failover")
	uid, gid := uint32(65534), uint32(65534)
	if u, err := user.Lookup("nobody"); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			uid = uint32(n)
		}
		if n, err := strconv.ParseUint(u.Gid, 10, 32); err == nil {
			gid = uint32(n)
		}
	}
	sock := filepath.Join(dir, "ulagg.sock")
	srv, err := appliance.ListenControl(r.a, appliance.ControlOptions{Path: sock, Logger: r.log})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	asNobody := func() string {
		cmd := exec.Command(bin, "-test.run=^TestControlHelperClient$")
		cmd.Env = append(os.Environ(), helperSocketEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as uid %d: %v\n%s", uid, err, out)
		}
		return string(out)
	}
	tests := []struct {
		name string
		mode os.FileMode
		want string
	}{
		{"mode 0600", 0o600, "HELPER-ERROR: permission denied on " + sock + ": the control socket is owner-only (0600); run as root"},
		{"SO_PEERCRED", 0o666, "HELPER-ERROR: permission denied: only uid 0 (the owner of the ulagg process) and root may use " + sock},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chmod(sock, tt.mode); err != nil {
				t.Fatal(err)
			}
			if got := asNobody(); !strings.Contains(got, tt.want) {
				t.Errorf("client as nobody: got\n%s\nwant a line containing %q", got, tt.want)
			}
		})
	}
	// Root still gets in.
	if _, err := appliance.ControlCall(sock, appliance.ControlRequest{Cmd: appliance.CmdStatus}); err != nil {
		t.Errorf("root: %v", err)
	}
}

// otherUserDir makes a directory other users may enter (removed when the
// test ends) holding bin, a copy of this test binary, for tests that run
// a client as another user: they need root, and fail under CI=true
// rather than skip.
func otherUserDir(t *testing.T, pattern string) (dir, bin string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to run a client as another user (CI=true: failing instead of skipping)")
		}
		t.Skip("needs root to run a client as another user")
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "appliance.test")
	if err := copyFile(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// copyFile copies the running test binary to dst.
func copyFile(dst string, mode os.FileMode) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(exe)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
