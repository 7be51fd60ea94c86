package host

import "time"

// Hooks for the external tests of state files, owner claims and MTU
// enforcement.

// Abandon closes p the way kill -9 would leave its interface: nothing is
// put back and the state file stays; only the process's own resources (the
// sockets, the owner claim) go.
func Abandon(p *AFPacket) {
	h := p.hostLink
	h.mu.Lock()
	h.gone = true // close then touches nothing on the interface
	h.mu.Unlock()
	h.state = nil // and keeps the file
	p.Close()
}

// StatePath is the state file a port on ifindex in p's namespace uses.
func StatePath(p *AFPacket) string {
	k, err := nsKeyOf(p.ns.h)
	if err != nil {
		panic(err)
	}
	return statePath(p.runDir, k, p.index)
}

// SetMTUEnforcement replaces the MTU enforcement policy until restore.
func SetMTUEnforcement(limit int, window, backoff, backoffMax time.Duration) (restore func()) {
	old := mtuEnforcement.Swap(&mtuPolicy{limit: limit, window: window, backoff: backoff, backoffMx: backoffMax})
	return func() { mtuEnforcement.Store(old) }
}
