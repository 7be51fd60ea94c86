package host

import (
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
)

// A workaround for an fd leak in a dependency. It finds the leaked fd by
// comparing /proc/self/fd around the leaking call and closes it only when
// exactly the expected one appeared: closing a guess could close somebody
// else's fd.

const tunTarget = "/dev/net/tun"

// fdsTo lists this process's fds whose /proc/self/fd link is target, leaving
// out those in skip.
func fdsTo(target string, skip []int) []int {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	var out []int
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || slices.Contains(skip, fd) {
			continue
		}
		if fdIs(fd, target) {
			out = append(out, fd)
		}
	}
	return out
}

func fdIs(fd int, target string) bool {
	link, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	return err == nil && link == target
}

// closeFDsTo closes the fds that still are what we took them for.
func closeFDsTo(target string, fds []int) {
	for _, fd := range fds {
		if fdIs(fd, target) {
			unix.Close(fd)
		}
	}
}

var waterNewMu sync.Mutex

// waterNew is water.New minus its leak: when TUNSETIFF fails (the TAP is
// attached elsewhere, or is no TAP) water returns without closing the
// /dev/net/tun fd it opened. Serialised so our own opens cannot interleave.
func waterNew(cfg water.Config) (*water.Interface, error) {
	waterNewMu.Lock()
	defer waterNewMu.Unlock()
	before := fdsTo(tunTarget, nil)
	ifce, err := water.New(cfg)
	if err != nil {
		if leaked := fdsTo(tunTarget, before); len(leaked) == 1 {
			closeFDsTo(tunTarget, leaked)
		}
	}
	return ifce, err
}
