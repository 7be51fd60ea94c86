package lagg

import "github.com/ulagg/ulagg/internal/clock"

// Clock is the lagg's time source: protocol timers, up/down delays and
// failover timing. Tests pass a fake one; nil means the real clock.
type Clock = clock.Clock

// Timer is a pending Clock.AfterFunc call.
type Timer = clock.Timer

type realClock = clock.Real
