package linkep

import (
	"errors"
	"fmt"
	"log/slog"
)

// Options configures Open for any kind of host port.
type Options struct {
	// Netns is the network namespace of the interface: "" for the calling
	// thread's, a name from /var/run/netns, or a path.
	Netns string
	// SpeedMbps overrides the speed read through ethtool.
	SpeedMbps uint64
	// DisableGSO turns host GSO off (afpacket only).
	DisableGSO bool
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Open opens host interface name as a port of the given kind: "afpacket" (an
// existing interface) or "tap" (a TAP device, created if missing).
func Open(kind, name string, opts Options) (Port, error) {
	switch kind {
	case "afpacket":
		p, err := OpenAFPacket(name, AFPacketOptions{
			DisableGSO: opts.DisableGSO,
			SpeedMbps:  opts.SpeedMbps,
			Netns:      opts.Netns,
			Logger:     opts.Logger,
		})
		if err != nil {
			return nil, err
		}
		return p, nil
	case "tap":
		t, err := OpenTAP(name, TAPOptions{SpeedMbps: opts.SpeedMbps, Netns: opts.Netns, Logger: opts.Logger})
		if err != nil {
			return nil, err
		}
		return t, nil
	case "wire":
		return nil, errors.New("a wire is an in-memory cable, made with NewWire, not opened by name")
	}
	return nil, fmt.Errorf("unknown port kind %q (want afpacket or tap)", kind)
}
