package appliance

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"slices"
	"strconv"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Who may use the control socket. Root and the uid ulagg runs as manage it
// (every command); with [control] group set, the socket is 0660 in that
// group and the group's members (primary or supplementary group, as the
// kernel reports the peer at connect) may read: status, monitor and hash.

// role is what a peer may do.
type role int

const (
	roleNone   role = iota
	roleReader      // status, monitor, hash, route show
	roleAdmin       // everything
)

func (r role) String() string {
	switch r {
	case roleAdmin:
		return "admin"
	case roleReader:
		return "read-only"
	}
	return "none"
}

// peerCred is what the kernel says of the peer when it connected:
// SO_PEERCRED's uid and gid, SO_PEERGROUPS' supplementary groups.
type peerCred struct {
	uid, gid uint32
	groups   []uint32
}

// peerCredOf reads SO_PEERCRED and SO_PEERGROUPS of c. Both are recorded at
// connect(2), so no /proc lookup races the peer (and none is needed under
// systemd's ProtectProc=invisible).
func peerCredOf(c *net.UnixConn) (peerCred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peerCred{}, err
	}
	var pc peerCred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		var cred *unix.Ucred
		if cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); serr != nil {
			serr = fmt.Errorf("SO_PEERCRED: %w", serr)
			return
		}
		pc.uid, pc.gid = cred.Uid, cred.Gid
		pc.groups, serr = peerGroups(int(fd))
	}); err != nil {
		return peerCred{}, err
	}
	return pc, serr
}

// maxPeerGroups bounds SO_PEERGROUPS' answer (NGROUPS_MAX is 65536).
const maxPeerGroups = 65536

// peerGroups reads SO_PEERGROUPS: the supplementary groups the peer had
// when it connected.
func peerGroups(fd int) ([]uint32, error) {
	for n := 64; ; {
		buf := make([]uint32, n)
		size := uint32(4 * n)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case errno == 0:
			return buf[:size/4], nil
		case errno == unix.ERANGE && int(size/4) > n && size/4 <= maxPeerGroups:
			n = int(size / 4)
		default:
			return nil, fmt.Errorf("SO_PEERGROUPS: %w", errno)
		}
	}
}

// rolePolicy decides a peer's role: self is the uid ulagg runs as, group
// the operator group's gid (-1: none).
type rolePolicy struct {
	self  uint32
	group int64
}

func (p rolePolicy) roleOf(c peerCred) role {
	if peerAllowed(c.uid, p.self) {
		return roleAdmin
	}
	if p.group < 0 {
		return roleNone
	}
	g := uint32(p.group)
	if c.gid == g || slices.Contains(c.groups, g) {
		return roleReader
	}
	return roleNone
}

// allows reports whether r may run req.
func (r role) allows(req ControlRequest) bool {
	switch r {
	case roleAdmin:
		return true
	case roleReader:
		switch req.Cmd {
		case CmdStatus:
			return !req.Zero
		case CmdHash, CmdMonitor:
			return true
		case CmdRoute: // route show only
			return len(req.Args) > 0 && slices.Contains([]string{"show", "list", "get"}, req.Args[0])
		}
	}
	return false
}

// lookupGroup resolves a group name or number to its gid.
func lookupGroup(name string) (int64, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int64(n), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("control socket group: %w", err)
	}
	n, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return -1, fmt.Errorf("control socket group %s: gid %q", name, g.Gid)
	}
	return int64(n), nil
}

// shareSocket gives the socket (and the directory, if ulagg created it) to
// the operator group: 0660, and 0750 for the directory.
func shareSocket(path string, gid int64, createdDir string) error {
	if gid < 0 {
		return nil
	}
	if createdDir != "" {
		if err := os.Chown(createdDir, -1, int(gid)); err != nil {
			return fmt.Errorf("control socket: giving %s to group %d: %w", createdDir, gid, err)
		}
		if err := os.Chmod(createdDir, 0o750); err != nil {
			return fmt.Errorf("control socket: %w", err)
		}
	}
	if err := os.Chown(path, -1, int(gid)); err != nil {
		return fmt.Errorf("control socket: giving %s to group %d (ulagg must be in the group): %w", path, gid, err)
	}
	return os.Chmod(path, 0o660)
}

// refusal is the answer to a peer without the role req needs.
func (p rolePolicy) refusal(r role, req ControlRequest, path string) error {
	if r == roleReader {
		what := req.Cmd
		if req.Cmd == CmdStatus && req.Zero {
			what = "ifconfig -z"
		}
		return fmt.Errorf("permission denied: members of the control group (gid %d) may only read (status, monitor, hash, route show); %s needs root or uid %d", p.group, what, p.self)
	}
	msg := fmt.Sprintf("permission denied: only uid %d (the owner of the ulagg process) and root may use %s", p.self, path)
	if p.group >= 0 {
		msg += fmt.Sprintf("; members of gid %d may read", p.group)
	}
	return errors.New(msg)
}

// Group returns the operator group the socket was given ("" none).
func (s *ControlServer) Group() string { return s.opts.Group }
