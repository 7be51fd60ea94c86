// Package ratelog bounds how many log lines one cause can write. Lines that
// a remote peer or an outside tool can trigger (a partner toggling LACP
// bits, a link flapping, a tool fighting over an MTU) must not flood the
// log: a Handler passes the first Burst records of each kind per Window and
// counts the rest, then writes one "N similar suppressed" line when the
// window after the flood closes.
//
// A record's kind is its message and level together with the values of the
// attributes named in Options.Keys (by default "lagg" and "port"), whether
// added with Logger.With or on the record, so one port's flood does not
// silence another port.
package ratelog

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Options configure a Handler.
type Options struct {
	Window time.Duration // default 10 s
	Burst  int           // records of one kind passed per window; default 5
	Keys   []string      // attributes that tell kinds apart; default lagg, port
	// MaxKinds bounds the kinds remembered; beyond it the oldest window's
	// kinds are forgotten early. Default 4096.
	MaxKinds int
	Now      func() time.Time // for tests; default time.Now
}

// Handler is a slog.Handler that rate-limits records by kind.
type Handler struct {
	next  slog.Handler
	st    *state
	bound []slog.Attr // attributes added with WithAttrs, for the kind
	group string
}

type state struct {
	opts Options

	mu sync.Mutex
	// +checklocks:mu
	kinds map[string]*kind
}

type kind struct {
	start      time.Time
	passed     int
	suppressed int
	level      slog.Level
	msg        string
	attrs      []slog.Attr // of the first suppressed record, for the summary
}

// New wraps next.
func New(next slog.Handler, o Options) *Handler {
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.Burst <= 0 {
		o.Burst = 5
	}
	if o.Keys == nil {
		o.Keys = []string{"lagg", "port"}
	}
	if o.MaxKinds <= 0 {
		o.MaxKinds = 4096
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Handler{next: next, st: &state{opts: o, kinds: map[string]*kind{}}}
}

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	n := *h
	n.next = h.next.WithAttrs(as)
	if h.group == "" {
		n.bound = append(slices.Clip(h.bound), as...)
	}
	return &n
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	n := *h
	n.next = h.next.WithGroup(name)
	if n.group == "" {
		n.group = name
	}
	return &n
}

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	key := h.key(r)
	now := h.st.opts.Now()
	var summary *kind
	h.st.mu.Lock()
	k := h.st.kinds[key]
	if k != nil && now.Sub(k.start) >= h.st.opts.Window {
		if k.suppressed > 0 {
			done := *k
			summary = &done
		}
		k = nil
	}
	if k == nil {
		if len(h.st.kinds) >= h.st.opts.MaxKinds {
			h.st.forgetLocked(now)
		}
		k = &kind{start: now, level: r.Level, msg: r.Message}
		h.st.kinds[key] = k
	}
	pass := k.passed < h.st.opts.Burst
	if pass {
		k.passed++
	} else {
		if k.suppressed == 0 {
			r.Attrs(func(a slog.Attr) bool { k.attrs = append(k.attrs, a); return true })
		}
		k.suppressed++
	}
	h.st.mu.Unlock()
	if summary != nil {
		h.writeSummary(ctx, summary, now)
	}
	if !pass {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *Handler) writeSummary(ctx context.Context, k *kind, now time.Time) {
	s := slog.NewRecord(now, k.level, k.msg+" (similar lines suppressed)", 0)
	s.AddAttrs(k.attrs...)
	s.AddAttrs(slog.Int("suppressed", k.suppressed), slog.Duration("window", h.st.opts.Window))
	_ = h.next.Handle(ctx, s)
}

// Flush writes the summaries of every kind with suppressed records, as
// when their windows close; call it before exiting.
func (h *Handler) Flush(ctx context.Context) {
	now := h.st.opts.Now()
	h.st.mu.Lock()
	var done []kind
	for key, k := range h.st.kinds {
		if k.suppressed > 0 {
			done = append(done, *k)
		}
		delete(h.st.kinds, key)
	}
	h.st.mu.Unlock()
	for i := range done {
		h.writeSummary(ctx, &done[i], now)
	}
}

// forgetLocked drops kinds whose window has closed; if none has, all of
// them (a flood of distinct kinds must not grow memory).
//
// +checklocks:s.mu
func (s *state) forgetLocked(now time.Time) {
	for key, k := range s.kinds {
		if now.Sub(k.start) >= s.opts.Window {
			delete(s.kinds, key)
		}
	}
	if len(s.kinds) >= s.opts.MaxKinds {
		clear(s.kinds)
	}
}

func (h *Handler) key(r slog.Record) string {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte(0)
	b.WriteString(r.Message)
	add := func(a slog.Attr) {
		if slices.Contains(h.st.opts.Keys, a.Key) {
			b.WriteByte(0)
			b.WriteString(a.Key)
			b.WriteByte('=')
			b.WriteString(a.Value.String())
		}
	}
	for _, a := range h.bound {
		add(a)
	}
	r.Attrs(func(a slog.Attr) bool { add(a); return true })
	return b.String()
}
