package linkep

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// OpenOptions configure opening a port of any registered kind by name.
type OpenOptions struct {
	// Netns is the network namespace of the interface: "" for the calling
	// thread's, a name from /var/run/netns, or a path.
	Netns string
	// SpeedMbps overrides the speed the port would read from the kernel.
	SpeedMbps uint64
	// DisableGSO keeps the port from offering host GSO, for peers that
	// cannot take 64 KB frames.
	DisableGSO bool
	// RuntimeDir is where host ports keep their state files (what to put
	// back on an interface after a crash); "" is the kind's default
	// (/run/ulagg for afpacket and tap).
	RuntimeDir string
	// CarrierPoll is how often host ports read their carrier directly
	// (linkep/host carrier_poll.go) instead of waiting for the kernel's
	// batched link events: 0 is the kind's default (10 ms), negative
	// means rtnetlink events only.
	CarrierPoll time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Opener opens the interface called name as a port of one kind.
type Opener func(name string, opts OpenOptions) (Port, error)

var kinds struct {
	sync.RWMutex
	// +checklocks:RWMutex
	m map[string]Opener // made by the first RegisterKind
}

// RegisterKind makes kind openable by name through Open. Each kind registers
// itself from its own file's init; registering a kind twice panics, as
// database/sql drivers do, since it is a programming error.
func RegisterKind(kind string, open Opener) {
	kinds.Lock()
	defer kinds.Unlock()
	if kind == "" || open == nil {
		panic("linkep: RegisterKind needs a kind and an opener")
	}
	if _, dup := kinds.m[kind]; dup {
		panic("linkep: port kind " + kind + " registered twice")
	}
	if kinds.m == nil {
		kinds.m = map[string]Opener{}
	}
	kinds.m[kind] = open
}

// Kinds returns the registered port kinds, sorted.
func Kinds() []string {
	kinds.RLock()
	defer kinds.RUnlock()
	names := make([]string, 0, len(kinds.m))
	for k := range kinds.m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// Open opens the interface called name as a port of the given kind.
func Open(kind, name string, opts OpenOptions) (Port, error) {
	kinds.RLock()
	open := kinds.m[kind]
	kinds.RUnlock()
	if open == nil {
		return nil, fmt.Errorf("unknown port kind %q (have %s)", kind, strings.Join(Kinds(), ", "))
	}
	return open(name, opts)
}
