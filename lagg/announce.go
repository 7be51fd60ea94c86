package lagg

import (
	"fmt"
	"time"
)

// Announcement repetition, as Linux bonding's num_grat_arp/num_unsol_na and
// peer_notif_delay (teamd: notify_peers.count and .interval).
//
// Two by default, not Linux's one: a switch may learn the dead port's last
// frames after the first announcement. Open vSwitch's userspace datapath
// learns from frames that hit its flow cache only when a revalidator next
// pushes their statistics, and kept the MAC on the dead port (over 2 s)
// in 5 of 8 failovers of integration's TestOVSVLANFailover with one
// announcement, in none of 10 with two. One frame more per address is
// nothing next to that. 100 ms apart: Linux's usual (peer_notif_delay
// follows miimon, mostly 100 ms), and under TCP's 200 ms minimum RTO.
const (
	DefaultAnnounceCount    = 2
	DefaultAnnounceInterval = 100 * time.Millisecond
	MaxAnnounceCount        = 255
	MinAnnounceInterval     = time.Millisecond
	MaxAnnounceInterval     = time.Minute
)

// announceSeries is the pending series of announcements. Only
// routineControl touches it, so it needs no lock: a trigger reaches it
// through kick, a repetition through annC.
type announceSeries struct {
	gen      uint64 // the series; a stale timer's send carries an older one
	left     int    // announcements still to send in this series
	interval time.Duration
	timer    Timer
}

// validateAnnounce checks the announcement settings (normalised: zero is
// the default).
func (c *Config) validateAnnounce() error {
	if c.AnnounceCount < 1 || c.AnnounceCount > MaxAnnounceCount {
		return fmt.Errorf("announce count %d out of range 1..%d", c.AnnounceCount, MaxAnnounceCount)
	}
	if c.AnnounceInterval < MinAnnounceInterval || c.AnnounceInterval > MaxAnnounceInterval {
		return fmt.Errorf("announce interval %v out of range %v..%v", c.AnnounceInterval, MinAnnounceInterval, MaxAnnounceInterval)
	}
	return nil
}

// normalizeAnnounce gives zero values their default.
func (c *Config) normalizeAnnounce() {
	if c.AnnounceCount == 0 {
		c.AnnounceCount = DefaultAnnounceCount
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = DefaultAnnounceInterval
	}
}

// requestAnnounce starts a new series: the first announcement now, the
// others at the configured interval. A series still running is replaced,
// as a new trigger means peers must learn the newest state. Callable with
// or without l.mu.
func (l *Lagg) requestAnnounce() {
	select {
	case l.kick <- struct{}{}:
	default: // a start is pending already: it reads the settings itself
	}
}

// announceStart runs on routineControl for a kick: it replaces any running
// series and sends the first announcement.
func (l *Lagg) announceStart() {
	l.mu.Lock()
	closed, count, interval := l.closed, l.cfg.AnnounceCount, l.cfg.AnnounceInterval
	l.mu.Unlock()
	if closed {
		return
	}
	s := &l.ann
	l.announceStop() // a new generation: a stale timer's send is ignored
	s.left, s.interval = count, interval
	l.announceNext(s.gen)
}

// announceNext sends one announcement of series gen, arming the timer for
// the next one first so the interval does not include the announcer's own
// time. It runs on routineControl.
func (l *Lagg) announceNext(gen uint64) {
	s := &l.ann
	if gen != s.gen || s.left <= 0 {
		return // a stopped timer's late send
	}
	s.left--
	s.timer = nil
	if s.left > 0 {
		s.timer = l.clock.AfterFunc(s.interval, func() {
			// Blocking, on the timer's own goroutine: a dropped send
			// would end the series early.
			select {
			case l.annC <- gen:
			case <-l.stopCh:
			}
		})
	}
	if fn := l.announcer.Load(); fn != nil {
		(*fn)()
	}
}

// announceStop cancels the pending repetition (a new series, or Close).
func (l *Lagg) announceStop() {
	s := &l.ann
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	s.left = 0
	s.gen++
}
