package appliance

import "errors"

// Alive returns once the appliance's lock could be taken: nil while it
// runs, an error once closed. A reconciliation that never ends keeps it
// from returning, which is what a watchdog wants to notice.
func (a *Appliance) Alive() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errors.New("appliance is closed")
	}
	return nil
}
