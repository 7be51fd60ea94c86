package host

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netNS is the network namespace a host port lives in. A socket belongs to
// the namespace it was created in, so every socket a port needs (packet
// socket, netlink handle, ethtool socket, TAP fd) is created once inside it;
// after that the port works from any goroutine.
type netNS struct {
	h netns.NsHandle // owned; closed by close
}

// openNetNS resolves a namespace option: "" is the calling thread's namespace
// (captured now, so a caller that entered a namespace on a locked thread gets
// that one), a name is looked up under /var/run/netns, and anything with a
// slash is a path (e.g. /proc/PID/ns/net).
func openNetNS(spec string) (*netNS, error) {
	var (
		h   netns.NsHandle
		err error
	)
	switch {
	case spec == "":
		h, err = netns.Get()
	case strings.ContainsRune(spec, '/'):
		h, err = netns.GetFromPath(spec)
	default:
		h, err = netns.GetFromName(spec)
	}
	if err != nil {
		if spec == "" {
			spec = "current"
		}
		return nil, fmt.Errorf("network namespace %s: %w", spec, err)
	}
	return &netNS{h: h}, nil
}

func (n *netNS) do(fn func() error) error { return inNetNS(n.h, fn) }

func (n *netNS) close() {
	if n != nil {
		n.h.Close()
	}
}

// inNetNS runs fn on a thread in namespace h. It uses its own goroutine so a
// thread that cannot be switched back stays locked and is discarded by the
// runtime instead of leaking the namespace to unrelated goroutines. Without a
// switch (h is already the thread's namespace) it needs no privilege.
func inNetNS(h netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		cur, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer cur.Close()
		if cur.Equal(h) {
			err := fn()
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		if err := netns.Set(h); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		err = fn()
		if rerr := netns.Set(cur); rerr != nil {
			// Keep the thread locked: the runtime ends it with this goroutine.
			errc <- errors.Join(err, fmt.Errorf("setns back: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// nsKey identifies a network namespace independently of the fd naming it.
type nsKey struct{ dev, ino uint64 }

func nsKeyOf(h netns.NsHandle) (nsKey, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		return nsKey{}, fmt.Errorf("fstat netns: %w", err)
	}
	return nsKey{dev: st.Dev, ino: st.Ino}, nil
}
