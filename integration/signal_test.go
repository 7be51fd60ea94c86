package integration

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
)

// TestSignalReloadFIFO: the configuration file is replaced by a FIFO (no
// writer) and ulagg gets SIGHUP. The reload is refused at once and logged
// (the file is not a regular file), `ulagg reload` answers with that error
// promptly, the lagg keeps serving, and SIGTERM still ends the process
// within a second, exit 0.
func TestSignalReloadFIFO(t *testing.T) {
	tp := newTopo(t, 2)
	dir, file := crWrite(t, func(dir string) string { return crConfig(dir, 0, tp.ports...) })
	p := crStart(t, tp.lag, file)
	crWaitServing(t, tp, p)

	if err := os.Rename(file, file+".orig"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(file, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !testkit.Poll(3*time.Second, func() bool {
		return bytes.Contains(p.out.Bytes(), []byte("reload refused")) && bytes.Contains(p.out.Bytes(), []byte("not a regular file"))
	}) {
		t.Errorf("no line saying the reload was refused (not a regular file) within 3s of SIGHUP")
	}

	// `ulagg reload` from the CLI: an error, promptly.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildULagg(t), "reload", "-s", filepath.Join(dir, "ulagg.sock"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	t.Logf("measure: `ulagg reload` with a FIFO for the file: %v after %v: %s", err, took.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	switch {
	case ctx.Err() != nil:
		t.Errorf("`ulagg reload` hangs (killed after 5s)")
	case err == nil:
		t.Errorf("`ulagg reload` succeeded, want an error")
	case !strings.Contains(stderr.String(), "not a regular file"):
		t.Errorf("`ulagg reload` error %q does not say the file is not a regular file", stderr.String())
	}
	if took > 2*time.Second {
		t.Errorf("`ulagg reload` took %v, want an answer within 2s", took)
	}
	pingOK(t, tp.host, 3)

	took = p.term(t, time.Second)
	t.Logf("measure: SIGTERM after the FIFO reload: exit after %v", took.Round(time.Millisecond))
}

// TestSignalTermDuringReloads: SIGTERM right after a burst of SIGHUPs (each
// reload re-reading the file) still ends ulagg within a second, exit 0.
func TestSignalTermDuringReloads(t *testing.T) {
	tp := newTopo(t, 2)
	_, file := crWrite(t, func(dir string) string { return crConfig(dir, 0, tp.ports...) })
	p := crStart(t, tp.lag, file)
	crWaitServing(t, tp, p)
	for range 20 {
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	took := p.term(t, time.Second)
	t.Logf("measure: SIGTERM after 20 SIGHUPs: exit after %v", took.Round(time.Millisecond))
}

// TestSignalControlOutOfFDs: ulagg under `prlimit --nofile=48`, 200
// connections to its control socket. Accept fails with EMFILE once the fds
// are gone (and connections beyond the cap get a busy answer); the control
// socket keeps going, and answers `ulagg ifconfig -l` once the connections
// close.
func TestSignalControlOutOfFDs(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "ulagg.toml")
	sock := filepath.Join(dir, "ulagg.sock")
	cfg := "[control]\nsocket = \"" + sock + "\"\nruntime_dir = \"" + filepath.Join(dir, "run") + "\"\n"
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Fatalf("prlimit (util-linux): %v", err)
	}
	p := &crProc{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(prlimit, "--nofile=48:48", buildULagg(t), "run", "-c", file)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if p.running() {
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("ulagg run output:\n%s", ifcTail(p.out.String(), 8<<10))
		}
	})
	ifconfigL := func() (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, buildULagg(t), "ifconfig", "-s", sock, "-l").CombinedOutput()
		return string(out), err
	}
	if !testkit.Poll(10*time.Second, func() bool { _, err := ifconfigL(); return err == nil }) {
		t.Fatal("the control socket does not answer")
	}
	var conns []net.Conn
	for range 200 {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	if !testkit.Poll(5*time.Second, func() bool { return bytes.Contains(p.out.Bytes(), []byte("too many open files")) }) {
		t.Errorf("no accept error logged: the fd limit was not reached")
	}
	for _, c := range conns {
		c.Close()
	}
	start := time.Now()
	var out string
	if !testkit.Poll(5*time.Second, func() bool { out, err = ifconfigL(); return err == nil }) {
		t.Fatalf("`ulagg ifconfig -l` after the flood: %v: %s", err, out)
	}
	t.Logf("measure: 200 connections under nofile=48: served again %v after they closed; %d accept-error lines, %d busy lines",
		time.Since(start).Round(time.Millisecond), bytes.Count(p.out.Bytes(), []byte("accept failed")), bytes.Count(p.out.Bytes(), []byte("too many connections")))
	if bytes.Contains(p.out.Bytes(), []byte("control socket stops")) {
		t.Errorf("the control socket stopped")
	}
	p.term(t, time.Second)
}
