// Package gvisorlog routes gVisor's own log (gvisor.dev/gvisor/pkg/log,
// e.g. "W1130 12:00:00.000000 1 dispatcher.go:307] tcp.Endpoint...") into
// slog, so that it comes out in ulagg's format (text or JSON), at ulagg's
// level, and rate-limited like every line a peer can trigger.
package gvisorlog

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"time"

	glog "gvisor.dev/gvisor/pkg/log"

	"github.com/ulagg/ulagg/internal/ratelog"
)

// Emitter is a gVisor log.Emitter that writes slog records.
//
// A record's message is gVisor's format string with each verb shown as
// "…", the same for every line from one call site, so that ratelog counts
// a flood of lines that differ only in addresses as one kind; the whole
// line is the "text" attribute, and "caller" is gVisor's file:line.
type Emitter struct {
	h slog.Handler
}

var _ glog.Emitter = (*Emitter)(nil)

// NewEmitter writes through h, rate-limited by ratelog (gVisor logs what
// peers send it: a SYN flood's failures are one line per packet).
func NewEmitter(h slog.Handler) *Emitter {
	return &Emitter{h: ratelog.New(h.WithAttrs([]slog.Attr{slog.String("component", "gvisor")}), ratelog.Options{})}
}

// Level maps a gVisor level to slog's.
func Level(l glog.Level) slog.Level {
	switch l {
	case glog.Warning:
		return slog.LevelWarn
	case glog.Info:
		return slog.LevelInfo
	default:
		return slog.LevelDebug
	}
}

// verbs matches a fmt verb with its flags, width and precision.
var verbs = regexp.MustCompile(`%[-+# 0]*[0-9*]*(?:\.[0-9*]*)?[a-zA-Z%]`)

// Message is the record message for a gVisor format string.
func Message(format string) string {
	return "gvisor: " + verbs.ReplaceAllStringFunc(format, func(v string) string {
		if v == "%%" {
			return "%"
		}
		return "…"
	})
}

// Emit implements log.Emitter.
func (e *Emitter) Emit(depth int, level glog.Level, ts time.Time, format string, v ...any) {
	ctx := context.Background()
	lvl := Level(level)
	if !e.h.Enabled(ctx, lvl) {
		return
	}
	var pcs [1]uintptr
	// 0 is runtime.Callers, 1 this frame; depth counts from gVisor's
	// Emit caller, as its GoogleEmitter's runtime.Caller(depth+1) does.
	runtime.Callers(depth+2, pcs[:])
	r := slog.NewRecord(ts, lvl, Message(format), pcs[0])
	if f, _ := runtime.CallersFrames(pcs[:]).Next(); f.File != "" {
		r.AddAttrs(slog.String("caller", filepath.Base(f.File)+":"+strconv.Itoa(f.Line)))
	}
	r.AddAttrs(slog.String("text", fmt.Sprintf(format, v...)))
	_ = e.h.Handle(ctx, r)
}

// Install makes h gVisor's log target and sets gVisor's level to the
// lowest h enables (gVisor does not format what it would not log). Call it
// before the first gVisor stack is made: gVisor's SetTarget must not race
// with its logging.
func Install(h slog.Handler) {
	ctx := context.Background()
	switch {
	case h.Enabled(ctx, slog.LevelDebug):
		glog.SetLevel(glog.Debug)
	case h.Enabled(ctx, slog.LevelInfo):
		glog.SetLevel(glog.Info)
	default:
		glog.SetLevel(glog.Warning)
	}
	glog.SetTarget(NewEmitter(h))
}
