package host

import (
	"fmt"
	"net"
	"os"
)

// claimInterface takes the owner claim on h's interface (h.index), makes
// the state directory, and puts back what a previous owner's state file
// says it left changed. It returns the identity fields of h's own state
// entry. On error the claim, if taken, is released by close.
func (h *hostLink) claimInterface() (hostState, error) {
	c, err := claimOwner(h.ns, h.index, h.name)
	if err != nil {
		return hostState{}, err
	}
	h.claim = c
	if err := openStateDir(h.runDir); err != nil {
		return hostState{}, fmt.Errorf("%s: %w", h.name, err)
	}
	k, err := nsKeyOf(h.ns.h)
	if err != nil {
		return hostState{}, err
	}
	id := hostState{
		Version:     stateVersion,
		BootID:      bootID(),
		NetnsDev:    k.dev,
		NetnsIno:    k.ino,
		NetnsCookie: netnsCookie(c.fd),
		Ifindex:     h.index,
		Name:        h.name,
		PID:         os.Getpid(),
	}
	if err := h.recoverState(statePath(h.runDir, k, h.index), &id); err != nil {
		return hostState{}, err
	}
	return id, nil
}

// recoverState applies the state file at path, if a previous owner left
// one for this very interface, and removes it. A file for another interface
// (renamed, recreated, another namespace or boot) is removed untouched: its
// values say nothing about this one. The caller holds the owner claim, so
// the file's writer is gone.
func (h *hostLink) recoverState(path string, id *hostState) error {
	old, ok, err := readState(path)
	if err != nil {
		h.log.Warn("unreadable state file removed", "file", path, "err", err)
		return removeFileSync(path)
	}
	if !ok {
		return nil
	}
	if !old.sameInterface(id) {
		h.log.Info("state file of another interface removed, nothing put back", "file", path,
			"its_name", old.Name, "its_ifindex", old.Ifindex)
		return removeFileSync(path)
	}
	l, err := h.nl.LinkByIndex(h.index)
	if err != nil {
		return fmt.Errorf("read %s: %w", h.name, err)
	}
	a := l.Attrs()
	attrs := []any{"pid", old.PID, "file", path}
	if cur := uint32(a.MTU); old.ours(cur) {
		if err := h.nl.LinkSetMTU(l, int(old.OrigMTU)); err != nil {
			return fmt.Errorf("%s: cannot put back the MTU %d a previous ulagg (pid %d) changed: %w", h.name, old.OrigMTU, old.PID, err)
		}
		attrs = append(attrs, "mtu", fmt.Sprintf("%d→%d", cur, old.OrigMTU))
	}
	if old.BroughtUp && a.Flags&net.FlagUp != 0 {
		if err := h.nl.LinkSetDown(l); err != nil {
			return fmt.Errorf("%s: cannot put back the admin-down state a previous ulagg (pid %d) changed: %w", h.name, old.PID, err)
		}
		attrs = append(attrs, "admin", "down")
	}
	if old.DisabledIPv6 { // ipv6_sysctl.go
		change, err := h.recoverIPv6()
		if err != nil {
			return err
		}
		if change != "" {
			attrs = append(attrs, "disable_ipv6", change)
		}
	}
	h.log.Info("put back what a previous ulagg left on the interface", attrs...)
	return removeFileSync(path)
}
