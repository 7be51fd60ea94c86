package host

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync"
)

// While a port is a member of a lagg, the kernel must not run IPv6 on its
// interface: it would answer neighbour solicitations, autoconfigure
// addresses and send router solicitations of its own with the port's MAC,
// next to the lagg's stack. Join sets net.ipv6.conf.IF.disable_ipv6 = 1
// (inside the port's namespace: /proc/sys/net is the opening thread's
// namespace's) and Leave, or close, puts 0 back if that is what it found.
// The state file records the change before it is made, so that after a
// crash the next port to open the interface restores it (recoverState).

// ipv6Sysctl is where the kernel keeps an interface's disable_ipv6; a
// variable so that tests can point it elsewhere.
var ipv6Sysctl = func(name string) string { return "/proc/sys/net/ipv6/conf/" + name + "/disable_ipv6" }

// v6State is a port's hold on its interface's disable_ipv6.
type v6State struct {
	mu sync.Mutex
	// +checklocks:mu
	disabled bool // we set disable_ipv6 from 0 to 1 and have not put it back
}

// readDisableIPv6 reads the interface's disable_ipv6 in the port's
// namespace; ok is false when the kernel has no IPv6 (or no such entry).
func (h *hostLink) readDisableIPv6() (on, ok bool, err error) {
	err = h.ns.do(func() error {
		b, err := os.ReadFile(ipv6Sysctl(h.name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		on = strings.TrimSpace(string(b)) != "0"
		return nil
	})
	return on, ok, err
}

// writeDisableIPv6 writes the interface's disable_ipv6 in the port's
// namespace.
func (h *hostLink) writeDisableIPv6(on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	return h.ns.do(func() error {
		f, err := os.OpenFile(ipv6Sysctl(h.name), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, werr := f.WriteString(v)
		return errors.Join(werr, f.Close())
	})
}

// disableIPv6 turns the kernel's IPv6 off on the interface if it is on,
// recording the change first. A failure is logged: the port works anyway,
// with the kernel answering next to the lagg.
func (h *hostLink) disableIPv6() {
	h.v6.mu.Lock()
	defer h.v6.mu.Unlock()
	if h.v6.disabled {
		return
	}
	on, ok, err := h.readDisableIPv6()
	if err != nil || !ok || on {
		if err != nil {
			h.log.Warn("cannot read the interface's disable_ipv6; the kernel's IPv6 stays on", "err", err)
		}
		return // no IPv6 in the kernel, or off already (by someone else: not ours to put back)
	}
	if err := h.record(func(s *hostState) { s.DisabledIPv6 = true }); err != nil {
		h.log.Warn("cannot record disable_ipv6 before setting it; the kernel's IPv6 stays on", "err", err)
		return
	}
	if err := h.writeDisableIPv6(true); err != nil {
		_ = h.record(func(s *hostState) { s.DisabledIPv6 = false })
		h.log.Warn("cannot set disable_ipv6; the kernel's IPv6 stays on", "err", err)
		return
	}
	h.v6.disabled = true
	h.log.Debug("kernel IPv6 disabled on the port", "sysctl", ipv6Sysctl(h.name))
}

// restoreIPv6 puts disable_ipv6 back to 0 if the port set it and it is
// still 1, and clears the record. It reports whether the record must stay
// (the value could not be put back).
func (h *hostLink) restoreIPv6() (keep bool) {
	h.v6.mu.Lock()
	defer h.v6.mu.Unlock()
	if !h.v6.disabled {
		return false
	}
	on, ok, err := h.readDisableIPv6()
	if err == nil && ok && on {
		err = h.writeDisableIPv6(false)
	}
	if err != nil {
		h.log.Warn("cannot put back disable_ipv6 = 0", "err", err)
		return true
	}
	h.v6.disabled = false
	if err := h.record(func(s *hostState) { s.DisabledIPv6 = false }); err != nil {
		h.log.Warn("cannot update the state file", "err", err)
	}
	return false
}

// recoverIPv6 is recoverState's part: a previous owner disabled the
// kernel's IPv6 and died; put it back on if it is still off.
func (h *hostLink) recoverIPv6() (string, error) {
	on, ok, err := h.readDisableIPv6()
	if err != nil {
		return "", err
	}
	if !ok || !on {
		return "", nil
	}
	if err := h.writeDisableIPv6(false); err != nil {
		return "", fmt.Errorf("%s: cannot put back disable_ipv6 = 0: %w", h.name, err)
	}
	return "1→0", nil
}
