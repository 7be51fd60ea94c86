package host

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// One owner per interface. A port claims its interface for its whole life
// by binding a listening unix socket to the abstract name "ulagg/port/IFINDEX"
// in the interface's network namespace. Abstract names live per network
// namespace and die with the socket, so the claim is host-wide for that
// interface (whatever runtime directory each process was given), needs no
// file, and is released by the kernel however the owner ends, kill -9
// included. A second claim, from this process or another, finds the name
// taken, connects to it and reads the owner's pid with SO_PEERCRED.
//
// The owner never accepts: each probe stays queued on its socket until the
// port closes. ownerBacklog probes get the pid; later ones still get the
// refusal, without the pid.

const ownerBacklog = 64

// OwnedError is the refusal to open an interface that another port, in this
// process or another, holds.
type OwnedError struct {
	Name string // the interface
	PID  int    // the owner's process id, 0 if it could not be told
	Comm string // the owner's command name, if known
}

func (e *OwnedError) Error() string {
	switch {
	case e.PID == 0:
		return fmt.Sprintf("%s is in use by another ulagg (its pid could not be read); one owner per interface", e.Name)
	case e.PID == os.Getpid():
		return fmt.Sprintf("%s is already open in this process (pid %d); one owner per interface", e.Name, e.PID)
	case e.Comm != "":
		return fmt.Sprintf("%s is in use by pid %d (%s); one owner per interface: stop it or remove the port from its configuration", e.Name, e.PID, e.Comm)
	}
	return fmt.Sprintf("%s is in use by pid %d; one owner per interface: stop it or remove the port from its configuration", e.Name, e.PID)
}

// ownerClaim is a held claim; release gives it up.
type ownerClaim struct{ fd int }

func ownerAddr(ifindex int) *unix.SockaddrUnix {
	// The leading '@' makes x/sys/unix use the abstract namespace.
	return &unix.SockaddrUnix{Name: fmt.Sprintf("@ulagg/port/%d", ifindex)}
}

// claimOwner claims interface ifindex (called name) in ns.
func claimOwner(ns *netNS, ifindex int, name string) (*ownerClaim, error) {
	fd, err := unixSocketIn(ns)
	if err != nil {
		return nil, fmt.Errorf("owner claim on %s: %w", name, err)
	}
	addr := ownerAddr(ifindex)
	if err := unix.Bind(fd, addr); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			pid := ownerPID(ns, addr)
			return nil, &OwnedError{Name: name, PID: pid, Comm: procComm(pid)}
		}
		return nil, fmt.Errorf("owner claim on %s: bind: %w", name, err)
	}
	if err := unix.Listen(fd, ownerBacklog); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("owner claim on %s: listen: %w", name, err)
	}
	return &ownerClaim{fd: fd}, nil
}

// release gives the claim up. It is idempotent.
func (c *ownerClaim) release() {
	if c != nil && c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
}

// ownerPID asks the claim at addr for its owner's pid, or returns 0.
func ownerPID(ns *netNS, addr *unix.SockaddrUnix) int {
	fd, err := unixSocketIn(ns)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	if err := unix.Connect(fd, addr); err != nil {
		return 0 // EAGAIN: the backlog is full of earlier probes
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return 0
	}
	return int(cred.Pid)
}

// unixSocketIn creates a non-blocking AF_UNIX stream socket in ns: the
// abstract names it binds or reaches are that namespace's.
func unixSocketIn(ns *netNS) (int, error) {
	fd := -1
	err := ns.do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		return err
	})
	return fd, err
}

func procComm(pid int) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
