// Package linkep holds the child endpoints a lagg aggregates (AF_PACKET
// sockets on host interfaces, TAP devices, and an in-memory wire for tests)
// and the contract between them and the lagg.
//
// A child is a stack.LinkEndpoint with Ethernet framing:
//   - WritePackets receives complete frames: the lagg's AddHeader already
//     pushed the Ethernet header, so a child never adds one.
//   - Received frames reach the dispatcher with the 14-byte Ethernet header
//     consumed into pkt.LinkHeader() and the EtherType as the protocol, as
//     gVisor's fdbased endpoint does with EthernetHeader set.
//   - Unicast frames for a MAC other than LinkAddress() are dropped by the
//     child, so the lagg pushes its MAC to every child with SetLinkAddress,
//     except frames for the child's own original MAC (a link monitor probes
//     with it), which are delivered with pkt.PktType PacketOtherHost so the
//     lagg tells them apart without reading the header.
//   - A received frame keeps its outer 802.1Q/802.1ad tag in the frame, as on
//     the wire, even where the kernel stripped it into metadata (AF_PACKET
//     puts it back from PACKET_AUXDATA), so the EtherType reaching the
//     dispatcher is the TPID and the lagg sees every port kind alike.
//   - pkt.RXChecksumValidated is set on a received frame only when the
//     kernel vouches for its transport checksum (verified, or a partial
//     checksum of a locally generated frame); otherwise it must be checked.
package linkep

import (
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// Port is a child endpoint that a lagg can aggregate.
//
// Ownership: once a lagg accepts a Port it owns it; removing the port from
// the lagg detaches it (Attach(nil)), waits for it, restores its MAC and MTU,
// calls Leave and finally Close. A closed Port is never reused; adding the
// same interface again opens a new Port.
type Port interface {
	stack.LinkEndpoint

	// Name is the interface name: a host interface, a TAP device or a wire.
	Name() string

	// LinkUp reports whether the port's link (carrier and admin state) is up now.
	LinkUp() bool

	// SetEventHandler registers fn to receive this port's events; nil stops
	// delivery. fn runs on a goroutine of the port (a link watcher) or of the
	// caller that changed the link (the wire); it must not block and must not
	// call back into the port synchronously except LinkUp and Name.
	SetEventHandler(fn func(Event))

	// Join marks the port as a member of the lagg named owner: from now on
	// its MTU changes only through SetPortMTU. A direct SetMTU is refused
	// (in-memory ports) or reverted (host interfaces), with a message that
	// names the owner.
	Join(owner string)

	// Leave undoes Join.
	Leave()

	// SetPortMTU sets the port's MTU (the IP MTU, Ethernet header excluded) on
	// behalf of the lagg. It fails if the port cannot take that MTU.
	SetPortMTU(mtu uint32) error

	// SpeedMbps is the link speed in Mbit/s, or 0 if unknown.
	SpeedMbps() uint64
}

// EventKind says what changed on a port.
type EventKind int

const (
	// LinkChanged: the link went up or down; Event.Up has the new state.
	LinkChanged EventKind = iota + 1
	// MTUChanged: the port's MTU changed (host interfaces report it after
	// they restored the lagg's MTU, with Event.MTU the value seen).
	MTUChanged
	// Gone: the underlying interface disappeared; the port is dead.
	Gone
)

func (k EventKind) String() string {
	switch k {
	case LinkChanged:
		return "link"
	case MTUChanged:
		return "mtu"
	case Gone:
		return "gone"
	}
	return "unknown"
}

// Event is one change on a port.
type Event struct {
	Kind EventKind
	Up   bool   // LinkChanged: the new link state
	MTU  uint32 // MTUChanged: the MTU that was observed
}

// ErrMTULocked is returned when something other than the owning lagg tries
// to change a member port's MTU.
var ErrMTULocked = errors.New("the port is a lagg member: set the MTU on the lagg")

// KernelDropper is implemented by ports that can tell how many received
// frames the kernel dropped before the port read them (AF_PACKET's
// PACKET_STATISTICS: a full socket buffer). The lagg shows it per port.
type KernelDropper interface {
	// KernelDrops is the total since the port opened.
	KernelDrops() uint64
}
