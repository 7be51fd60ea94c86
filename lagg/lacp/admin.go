package lacp

import (
	"fmt"
	"time"
)

// SetPortAdminDown takes the port out of aggregation (down) or lets it back
// in, for a port the operator disabled. Unlike a link loss the port goes on
// exchanging LACPDUs: it is never selected, so it detaches and its
// LACPDUs say so (Synchronization off), and the partner stops collecting
// and distributing on it at once rather than after its timeout.
func (e *Engine) SetPortAdminDown(id PortID, down bool, now time.Time) error {
	p := e.port(id)
	if p == nil {
		return fmt.Errorf("%w: no port %d", ErrPort, id)
	}
	e.advanceTo(now)
	if p.adminDown != down {
		p.adminDown = down
		e.selDirty = true
	}
	e.settle()
	return nil
}
