package host

import (
	"os"
	"slices"
	"strconv"
	"sync"

	"github.com/songgao/water"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Workarounds for fd leaks in dependencies. Both find the leaked fds by
// comparing /proc/self/fd around the leaking call and close them only when
// exactly the expected ones appeared: closing a guess could close somebody
// else's fd.

// At the pinned gVisor version fdbased.New leaks file descriptors: each
// dispatcher gets a stop eventfd (stopfd.New) that nothing ever closes, and
// in RecvMMsg mode New first builds a readv dispatcher, eventfd included, and
// throws it away. A lagg that adds and removes ports would leak two fds per
// port. newFdbased finds those eventfds by comparing the fd table around New
// (serialised, so our own calls cannot interleave) and returns them; the
// caller closes them once the endpoint's dispatch goroutine is gone for good.
// If a gVisor bump changes the count, nothing is closed and the fd-count tests
// fail: revisit this workaround then.

var fdbasedNewMu sync.Mutex

// fdbasedEventFDs is how many eventfds fdbased.New creates for one FD in
// RecvMMsg mode: the discarded readv dispatcher's and the recvmmsg one's.
const fdbasedEventFDs = 2

func newFdbased(opts *fdbased.Options) (stack.LinkEndpoint, []int, error) {
	fdbasedNewMu.Lock()
	defer fdbasedNewMu.Unlock()
	before := fdsTo(eventFDTarget, nil)
	ep, err := fdbased.New(opts)
	fresh := fdsTo(eventFDTarget, before)
	if len(fresh) != fdbasedEventFDs*len(opts.FDs) {
		// Someone else created or closed eventfds meanwhile, or fdbased
		// changed: closing a guess could close somebody else's fd.
		fresh = nil
	}
	if err != nil {
		closeFDsTo(eventFDTarget, fresh)
		return nil, nil, err
	}
	return ep, fresh, nil
}

const (
	eventFDTarget = "anon_inode:[eventfd]"
	tunTarget     = "/dev/net/tun"
)

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

func closeEventFDs(fds []int) { closeFDsTo(eventFDTarget, fds) }

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
