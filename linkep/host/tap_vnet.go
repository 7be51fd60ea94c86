package host

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TAP with offloads. water (which creates and attaches the TAP) has no
// IFF_VNET_HDR, and a TAP's flags are set only by the TUNSETIFF that
// attaches its queue; a single-queue TAP takes one queue at a time. So
// water attaches the TAP with TUNSETPERSIST on (a TAP ulagg created would
// otherwise vanish when water's fd closes), its fd is closed, and
// /dev/net/tun is opened again with IFF_TAP|IFF_NO_PI|IFF_VNET_HDR;
// TUNSETOFFLOAD then tells the kernel we take partial checksums and TCP
// segments up to 64 KB (TSO4/6), and a created TAP loses TUNSETPERSIST again,
// so it still goes away with the port's fd.
//
// USO is not offered: the kernel would hand us UDP super-frames that gVisor
// does not segment, and gVisor never sends UDP GSO.

// tapOffloads is what TUNSETOFFLOAD enables on a TAP with a vnet header.
const tapOffloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6

// openTunVnet attaches the TAP name (in the calling thread's namespace) on
// a new /dev/net/tun fd with a virtio-net header and offloads; persist is
// the TUNSETPERSIST to leave the TAP with. The fd is nonblocking, for the
// runtime poller.
func openTunVnet(name string, persist bool) (*os.File, error) {
	fd, err := unix.Open(tunTarget, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", tunTarget, err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fail("ifreq", err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		return fail("TUNSETIFF IFF_VNET_HDR", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TUNSETVNETHDRSZ, vnetHdrSize); err != nil {
		return fail("TUNSETVNETHDRSZ", err)
	}
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, tapOffloads); err != nil {
		return fail("TUNSETOFFLOAD", err)
	}
	if !persist {
		if err := unix.IoctlSetInt(fd, unix.TUNSETPERSIST, 0); err != nil {
			return fail("TUNSETPERSIST 0", err)
		}
	}
	return os.NewFile(uintptr(fd), tunTarget), nil
}

// tapRxCap is the largest frame a tapRx holds: a 64 KB GSO frame and more.
var tapRxCap = func() int {
	n := -afRxHeadroom
	for _, s := range afRxBufSizes {
		n += s
	}
	return n
}()

// tapRx is the read goroutine's buffer: one AF_PACKET receive slot (pooled
// views up to 64 KiB, a virtio-net header), filled by one readv.
type tapRx struct {
	slot afRxSlot
	iovs []unix.Iovec // slot.iovs, from [0] (the vnet header) when vnet
	vnet bool

	// The result of the last readv.
	n     int
	errno unix.Errno
	// readFn is readv as a func value made once: passing a method value
	// per read would allocate.
	readFn func(fd uintptr) bool
}

func newTapRx(vnet bool) *tapRx {
	r := &tapRx{vnet: vnet}
	r.iovs = r.slot.iovs[1:]
	if vnet {
		r.slot.iovs[0] = unix.Iovec{Base: &r.slot.vnet[0]}
		r.slot.iovs[0].SetLen(vnetHdrSize)
		r.iovs = r.slot.iovs[:]
	}
	r.readFn = r.readv
	return r
}

// readv is a syscall.RawConn read function: false asks the poller to wait.
func (r *tapRx) readv(fd uintptr) bool {
	n, _, errno := unix.RawSyscall(unix.SYS_READV, fd, uintptr(unsafe.Pointer(&r.iovs[0])), uintptr(len(r.iovs)))
	if errno == unix.EAGAIN {
		return false
	}
	r.n, r.errno = int(n), errno
	return true
}
