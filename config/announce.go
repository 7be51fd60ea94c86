package config

import "time"

// Announcement repetition: how often a lagg announces its addresses
// (gratuitous ARP, unsolicited NA) on each failover, MAC change or link up,
// as Linux bonding's num_grat_arp/num_unsol_na and peer_notif_delay. The
// lagg package explains the defaults (lagg/announce.go).
const (
	DefaultAnnounceCount    = 2
	DefaultAnnounceInterval = 100 * time.Millisecond
	MaxAnnounceCount        = 255
	MaxAnnounceInterval     = 60 * time.Second
)

var (
	spanAnnounceCount      = span{lo: 1, hi: MaxAnnounceCount, zeroOK: true}
	spanAnnounceIntervalMs = span{lo: 1, hi: MaxAnnounceInterval.Milliseconds(), zeroOK: true}
)

// announce decodes the lagg's announce_count and announce_interval_ms.
func (d *decoder) announce(p string, t map[string]any, l *Lagg) {
	setInt(d, t, p, "announce_count", spanAnnounceCount, &l.AnnounceCount)
	var ms int64
	if setInt(d, t, p, "announce_interval_ms", spanAnnounceIntervalMs, &ms) {
		l.AnnounceInterval = time.Duration(ms) * time.Millisecond
	}
}

// announce checks them.
func (v *checker) announce(p string, l *Lagg) {
	v.inSpan(keyPath(p, "announce_count"), int64(l.AnnounceCount), spanAnnounceCount)
	key := keyPath(p, "announce_interval_ms")
	if l.AnnounceInterval%time.Millisecond != 0 {
		v.errorf(key, "%v is not a whole number of milliseconds", l.AnnounceInterval)
		return
	}
	v.inSpan(key, l.AnnounceInterval.Milliseconds(), spanAnnounceIntervalMs)
}

// announce writes them when set (a zero is the default).
func (w *writer) announce(l *Lagg) {
	if l.AnnounceCount != 0 {
		w.int("announce_count", int64(l.AnnounceCount))
	}
	if l.AnnounceInterval != 0 {
		w.int("announce_interval_ms", l.AnnounceInterval.Milliseconds())
	}
}

// AnnounceSettings returns the count and interval l asks for, defaults
// filled in.
func (l *Lagg) AnnounceSettings() (count int, interval time.Duration) {
	count, interval = l.AnnounceCount, l.AnnounceInterval
	if count == 0 {
		count = DefaultAnnounceCount
	}
	if interval == 0 {
		interval = DefaultAnnounceInterval
	}
	return count, interval
}
