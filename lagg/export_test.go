package lagg

import "gvisor.dev/gvisor/pkg/tcpip/stack"

// PortDispatcher returns the dispatcher the lagg gave the port named name
// (its receive shim), or nil, so tests can drive the receive path directly.
func PortDispatcher(l *Lagg, name string) stack.NetworkDispatcher {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p := l.portLocked(name); p != nil {
		return p
	}
	return nil
}
