package host

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/safchain/ethtool"
	"github.com/ulagg/ulagg/linkep"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// hostLink is what AFPacket and TAP share about their kernel interface: link
// state from the link watcher, MTU ownership while joined to a lagg, admin
// state and speed. Every kernel call goes through sockets created in the
// port's namespace.
//
// A port owns its interface: it holds the interface's owner claim
// (owner_lock.go) from attach to close, and records in a state file
// (state_file.go) what it is about to change on the interface, so that the
// next port to open it puts things back if this process dies without
// closing.
type hostLink struct {
	name   string
	ns     *netNS
	nl     *netlink.Handle
	eth    *ethtool.Ethtool // nil when unavailable or the speed is overridden
	index  int
	hw     net.HardwareAddr
	log    *slog.Logger
	runDir string // the runtime directory, for the state file

	claim *ownerClaim // held from attach to close; nil before
	state *stateFile  // nil before attach claimed the interface

	origMTU       uint32
	speedOverride uint64

	mtu     atomic.Uint32 // the endpoint's MTU, read on the data path
	speed   atomic.Uint64
	handler atomic.Pointer[func(linkep.Event)]
	unwatch func()

	// v6 is the kernel IPv6 the port turned off while joined (ipv6_sysctl.go).
	v6 v6State

	// mtuMu serialises MTU changes against the check of MTU notifications.
	// Lock order: mtuMu, then mu.
	mtuMu sync.Mutex

	mu sync.Mutex
	// +checklocks:mu
	up bool
	// +checklocks:mu
	gone bool
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	hostMTU uint32 // the host interface MTU as last seen or set
	// +checklocks:mu
	owner string // the lagg while joined
	// +checklocks:mu
	joined bool
	// +checklocks:mu
	wantMTU uint32 // while joined: the MTU the lagg wants
	// +checklocks:mu
	setMTU uint32 // the last MTU we set, 0 if none
	// +checklocks:mu
	broughtUp bool // the interface was admin down and we set it up

	// MTU enforcement while joined (checkMTU): at most mtuEnforcement.limit
	// reverts per window; past that the port stops fighting
	// whatever keeps changing the MTU, for a back-off that doubles with
	// each suspension.
	// +checklocks:mu
	reverts []time.Time // the reverts within the window
	// +checklocks:mu
	suspended bool // not enforcing: the MTU is foreign-managed
	// +checklocks:mu
	resume *time.Timer // ends the suspension
	// +checklocks:mu
	suspension uint64 // counts suspensions, so a stale timer ends none
	// +checklocks:mu
	strikes int // suspensions since the lagg last set the MTU
	// +checklocks:mu
	suppressed int // foreign changes left alone during the suspension
}

// mtuPolicy bounds MTU enforcement (checkMTU).
type mtuPolicy struct {
	limit     int           // reverts allowed within window
	window    time.Duration // the sliding window of reverts
	backoff   time.Duration // the first suspension
	backoffMx time.Duration // the longest suspension
}

// mtuEnforcement is the policy in force: 3 reverts in 10 s, then a pause
// of 30 s doubling up to 10 min. A variable so that tests can shorten it.
var mtuEnforcement atomic.Pointer[mtuPolicy]

func init() {
	mtuEnforcement.Store(&mtuPolicy{limit: 3, window: 10 * time.Second, backoff: 30 * time.Second, backoffMx: 10 * time.Minute})
}

// openHostLink creates the netlink and ethtool sockets in ns; attach does the
// rest once the interface exists.
func openHostLink(name string, ns *netNS, speedOverride uint64, runDir string, log *slog.Logger) (*hostLink, error) {
	if name == "" || len(name) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("invalid interface name %q", name)
	}
	if runDir == "" {
		runDir = DefaultRuntimeDir
	}
	h := &hostLink{name: name, ns: ns, log: log, speedOverride: speedOverride, runDir: runDir}
	err := ns.do(func() error {
		var err error
		if h.nl, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return fmt.Errorf("netlink: %w", err)
		}
		if speedOverride == 0 {
			// Speed is best effort: without ethtool it reads as 0.
			h.eth, _ = ethtool.NewEthtool()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// attach takes over link (looked up by the caller): it claims the
// interface, puts back what a previous owner left on it, brings it admin up
// if it is down, subscribes to its changes and reads the initial state.
func (h *hostLink) attach(link netlink.Link) error {
	h.index = link.Attrs().Index
	id, err := h.claimInterface()
	if err != nil {
		return err
	}
	// The "original" values are read only now, after recovery.
	if link, err = h.nl.LinkByIndex(h.index); err != nil {
		return fmt.Errorf("read %s: %w", h.name, err)
	}
	a := link.Attrs()
	h.hw = a.HardwareAddr
	h.origMTU = uint32(a.MTU)
	h.mtu.Store(h.origMTU)
	id.OrigMTU = h.origMTU
	h.state = &stateFile{path: statePath(h.runDir, nsKey{dev: id.NetnsDev, ino: id.NetnsIno}, h.index), cur: id}
	if a.Flags&net.FlagUp == 0 {
		// As `ifconfig wm0 up` in the lagg(4) recipe; undone by close,
		// or by the next start after a crash.
		if err := h.state.update(func(s *hostState) { s.BroughtUp = true }); err != nil {
			return fmt.Errorf("%s: cannot record its admin state before setting it up: %w", h.name, err)
		}
		if err := h.nl.LinkSetUp(link); err != nil {
			_ = h.state.update(func(s *hostState) { s.BroughtUp = false })
			return fmt.Errorf("set %s up: %w", h.name, err)
		}
		h.mu.Lock()
		h.broughtUp = true
		h.mu.Unlock()
	}
	unwatch, err := WatchLink(h.ns.h, h.index, h.onUpdate)
	if err != nil {
		return fmt.Errorf("watch %s: %w", h.name, err)
	}
	h.unwatch = unwatch
	// Read the state after subscribing so no change falls in between; under
	// mu so a concurrent (newer) update cannot be overwritten by this read.
	h.mu.Lock()
	fresh, err := h.nl.LinkByIndex(h.index)
	if err == nil {
		h.up = linkIsUp(fresh.Attrs())
		h.hostMTU = uint32(fresh.Attrs().MTU)
		h.mtu.Store(h.hostMTU)
	}
	h.mu.Unlock()
	if err != nil {
		return fmt.Errorf("read %s: %w", h.name, err)
	}
	h.refreshSpeed()
	return nil
}

func (h *hostLink) refreshSpeed() {
	if h.speedOverride != 0 {
		h.speed.Store(h.speedOverride)
		return
	}
	if h.eth == nil {
		return
	}
	// mtuMu also keeps close from closing the sockets under us.
	h.mtuMu.Lock()
	defer h.mtuMu.Unlock()
	if h.isClosed() {
		return
	}
	// ETHTOOL_GSET rather than GetLinkSettings: the library's
	// GLINKSETTINGS path misreads the kernel's size handshake and prints a
	// warning to stdout on every call.
	var cmd ethtool.EthtoolCmd
	speed, err := h.eth.CmdGet(&cmd, h.name)
	if err != nil {
		h.log.Debug("no link speed", "err", err)
		return
	}
	if speed == ^uint32(0) { // SPEED_UNKNOWN
		speed = 0
	}
	h.speed.Store(uint64(speed))
}

// onUpdate runs on the link watcher goroutine.
func (h *hostLink) onUpdate(u netlink.LinkUpdate) {
	var (
		evs   [3]linkep.Event
		n     int
		speed bool
		mtu   bool
	)
	// A notification's flags are those of when linkwatch sent it, which
	// may be before a change the carrier poller has seen since: a polled
	// port takes its link state from a read of the carrier now, so a late
	// notification cannot flip it back (and the poller, which reports only
	// what differs from its last read, would not flip it again).
	var carrier, polled bool
	if u.Header.Type != unix.RTM_DELLINK {
		carrier, polled = h.readCarrierNow()
	}
	h.mu.Lock()
	if h.closed || h.gone {
		h.mu.Unlock()
		return
	}
	if u.Header.Type == unix.RTM_DELLINK {
		h.gone = true
		if h.up {
			h.up = false
			evs[n] = linkep.Event{Kind: linkep.LinkChanged, Up: false}
			n++
		}
		evs[n] = linkep.Event{Kind: linkep.Gone}
		n++
	} else if a := u.Link.Attrs(); a != nil {
		up := linkIsUp(a)
		if polled {
			up = carrier
		}
		if up != h.up {
			h.up = up
			speed = up // renegotiated links may change speed
			evs[n] = linkep.Event{Kind: linkep.LinkChanged, Up: up}
			n++
		}
		mtu = a.MTU != 0 && uint32(a.MTU) != h.hostMTU
	}
	h.mu.Unlock()

	if mtu {
		if ev, ok := h.checkMTU(); ok {
			evs[n] = ev
			n++
		}
	}
	if speed {
		h.refreshSpeed()
	}
	if fn := h.handler.Load(); fn != nil {
		for _, ev := range evs[:n] {
			(*fn)(ev)
		}
	}
}

// checkMTU handles an MTU notification. It reads the interface's MTU instead
// of trusting the notification, which may predate a change the port made
// since; mtuMu keeps SetPortMTU out meanwhile. While joined, a foreign change
// is reverted to the lagg's MTU; otherwise the port follows it.
//
// Reverting is bounded: after 3 reverts within 10 s (mtuEnforcement)
// something keeps changing the MTU (another tool or daemon that thinks it
// owns the interface), and fighting it would flap the MTU as fast as both
// sides can go. The port then stops enforcing for a back-off (30 s, doubling
// up to 10 min), logs that once, leaves the foreign MTU in place (MTUForeign
// reports it) and counts the changes it let pass; when the back-off ends it
// logs how many it suppressed and puts the lagg's MTU back once more. A
// change the lagg makes (SetPortMTU) or a new Join ends the suspension.
func (h *hostLink) checkMTU() (linkep.Event, bool) {
	pol := mtuEnforcement.Load()
	h.mtuMu.Lock()
	defer h.mtuMu.Unlock()
	// A closed handle would make netlink fall back to a socket in this
	// thread's namespace, which need not be the port's.
	if h.isClosed() {
		return linkep.Event{}, false
	}
	l, err := h.nl.LinkByIndex(h.index)
	if err != nil {
		return linkep.Event{}, false // deleted: the RTM_DELLINK follows
	}
	cur := uint32(l.Attrs().MTU)
	now := time.Now()
	h.mu.Lock()
	if h.closed || h.gone || cur == h.hostMTU {
		h.mu.Unlock()
		return linkep.Event{}, false
	}
	if !h.joined {
		h.hostMTU = cur
		h.mtu.Store(cur)
		h.mu.Unlock()
		return linkep.Event{Kind: linkep.MTUChanged, MTU: cur}, true
	}
	want, owner := h.wantMTU, h.owner
	if h.suspended {
		h.suppressed++
		h.mu.Unlock()
		return linkep.Event{}, false
	}
	keep := h.reverts[:0]
	for _, at := range h.reverts {
		if now.Sub(at) < pol.window {
			keep = append(keep, at)
		}
	}
	h.reverts = keep
	if len(h.reverts) >= pol.limit {
		backoff := min(pol.backoff<<min(h.strikes, 16), pol.backoffMx)
		h.strikes++
		h.suspended, h.suppressed, h.reverts = true, 1, nil
		h.suspension++
		gen := h.suspension
		h.resume = time.AfterFunc(backoff, func() { h.resumeEnforcement(gen) })
		h.mu.Unlock()
		h.log.Error("the port's MTU keeps changing behind the lagg's back: not reverting it for a while; the MTU is foreign-managed meanwhile (is another program managing this interface?)",
			"owner", owner, "seen", cur, "mtu", want, "reverts", pol.limit, "within", pol.window, "backoff", backoff)
		return linkep.Event{}, false
	}
	h.reverts = append(h.reverts, now)
	h.mu.Unlock()
	h.log.Warn("MTU changed behind the lagg's back, restoring it", "owner", owner, "seen", cur, "mtu", want)
	if want != h.origMTU {
		if err := h.record(func(s *hostState) { s.SetMTU, s.PrevMTU = want, 0 }); err != nil {
			h.log.Error("cannot restore the port MTU: cannot record it first", "owner", owner, "mtu", want, "err", err)
			return linkep.Event{Kind: linkep.MTUChanged, MTU: cur}, true
		}
	}
	if err := h.nl.LinkSetMTU(l, int(want)); err != nil {
		h.log.Error("cannot restore the port MTU", "owner", owner, "mtu", want, "err", err)
	} else {
		h.mu.Lock()
		h.setMTU = want
		h.mu.Unlock()
	}
	return linkep.Event{Kind: linkep.MTUChanged, MTU: cur}, true
}

// resumeEnforcement ends a suspension of MTU enforcement (a timer's
// goroutine) and puts the lagg's MTU back if it is not in place.
func (h *hostLink) resumeEnforcement(gen uint64) {
	h.mu.Lock()
	if !h.suspended || h.closed || gen != h.suspension {
		h.mu.Unlock()
		return
	}
	n := h.suppressed
	h.endSuspensionLocked()
	h.mu.Unlock()
	h.log.Info("MTU enforcement resumes", "suppressed", n)
	if ev, ok := h.checkMTU(); ok {
		if fn := h.handler.Load(); fn != nil {
			(*fn)(ev)
		}
	}
}

// endSuspensionLocked stops a suspension of MTU enforcement.
//
// +checklocks:h.mu
func (h *hostLink) endSuspensionLocked() {
	if h.resume != nil {
		h.resume.Stop()
		h.resume = nil
	}
	h.suspended, h.suppressed, h.reverts = false, 0, nil
}

// resetEnforcement forgets the reverts and back-off: the lagg set the MTU.
func (h *hostLink) resetEnforcement() {
	h.mu.Lock()
	was, n := h.suspended, h.suppressed
	h.endSuspensionLocked()
	h.strikes = 0
	h.mu.Unlock()
	if was {
		h.log.Info("MTU enforcement resumes", "suppressed", n)
	}
}

// MTUForeign reports whether the port has stopped enforcing the lagg's MTU
// because something else keeps changing it (see checkMTU).
func (h *hostLink) MTUForeign() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.suspended
}

// record updates the state file (nil before attach).
func (h *hostLink) record(fn func(*hostState)) error {
	if h.state == nil {
		return nil
	}
	return h.state.update(fn)
}

// linkRef names the interface for netlink setters, which only use the index.
func (h *hostLink) linkRef() netlink.Link {
	return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: h.index, Name: h.name}}
}

// Name implements Port.Name.
func (h *hostLink) Name() string { return h.name }

// LinkUp implements Port.LinkUp.
func (h *hostLink) LinkUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up && !h.gone
}

// SetEventHandler implements Port.SetEventHandler.
func (h *hostLink) SetEventHandler(fn func(linkep.Event)) {
	if fn == nil {
		h.handler.Store(nil)
		return
	}
	h.handler.Store(&fn)
}

// Join implements Port.Join.
func (h *hostLink) Join(owner string) {
	h.resetEnforcement()
	h.disableIPv6() // the kernel's IPv6 is off while a member (ipv6_sysctl.go)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.joined, h.owner, h.wantMTU = true, owner, h.hostMTU
}

// Leave implements Port.Leave.
func (h *hostLink) Leave() {
	h.resetEnforcement()
	h.restoreIPv6()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.joined, h.owner = false, ""
}

// SpeedMbps implements Port.SpeedMbps.
func (h *hostLink) SpeedMbps() uint64 { return h.speed.Load() }

// OriginalMTU is the host interface MTU when the port was opened; the lagg
// gives it back with SetPortMTU when it releases the port.
func (h *hostLink) OriginalMTU() uint32 { return h.origMTU }

// MTU implements stack.LinkEndpoint.MTU.
func (h *hostLink) MTU() uint32 { return h.mtu.Load() }

// SetPortMTU implements Port.SetPortMTU: it sets the host interface MTU.
func (h *hostLink) SetPortMTU(mtu uint32) error {
	h.mtuMu.Lock()
	defer h.mtuMu.Unlock()
	h.mu.Lock()
	closed, gone, prev := h.closed, h.gone, h.setMTU
	h.mu.Unlock()
	switch {
	case closed:
		return errors.New("port closed")
	case gone:
		return fmt.Errorf("%s: interface is gone", h.name)
	}
	// Recorded before the change: after a crash in between, whichever of
	// prev and mtu is in place is put back by the next start.
	if mtu != h.origMTU {
		if err := h.record(func(s *hostState) { s.SetMTU, s.PrevMTU = mtu, prev }); err != nil {
			return fmt.Errorf("set MTU %d on %s: cannot record the original MTU first: %w", mtu, h.name, err)
		}
	}
	if err := h.nl.LinkSetMTU(h.linkRef(), int(mtu)); err != nil {
		if rerr := h.record(func(s *hostState) { s.SetMTU, s.PrevMTU = prev, 0 }); rerr != nil {
			h.log.Warn("state file", "err", rerr)
		}
		return fmt.Errorf("set MTU %d on %s: %w", mtu, h.name, err)
	}
	if err := h.record(func(s *hostState) { s.SetMTU, s.PrevMTU = mtu, 0 }); err != nil {
		h.log.Warn("state file", "err", err)
	}
	h.resetEnforcement()
	h.mu.Lock()
	h.wantMTU, h.hostMTU, h.setMTU = mtu, mtu, mtu
	h.mtu.Store(mtu)
	h.mu.Unlock()
	return nil
}

// TrySetMTU sets the MTU like SetMTU but reports linkep.ErrMTULocked while the port
// is a lagg member.
func (h *hostLink) TrySetMTU(mtu uint32) error {
	h.mu.Lock()
	joined := h.joined
	h.mu.Unlock()
	if joined {
		return linkep.ErrMTULocked
	}
	return h.SetPortMTU(mtu)
}

// SetMTU implements stack.LinkEndpoint.SetMTU. It is refused, with a warning,
// while the port is a lagg member.
func (h *hostLink) SetMTU(mtu uint32) {
	if err := h.TrySetMTU(mtu); err != nil {
		h.mu.Lock()
		owner := h.owner
		h.mu.Unlock()
		h.log.Warn("SetMTU refused", "owner", owner, "mtu", mtu, "err", err)
	}
}

// close stops watching and, when restore is set and the interface still
// exists, undoes what the port changed: admin up and an MTU we set that is
// still in place (the lagg normally restored it already). Then it removes
// the state file, unless something could not be put back (the next start
// tries again), and gives up the owner claim.
func (h *hostLink) close(restore bool) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	if h.resume != nil {
		h.resume.Stop()
		h.resume = nil
	}
	gone, broughtUp, setMTU := h.gone, h.broughtUp, h.setMTU
	h.mu.Unlock()
	if h.unwatch != nil {
		h.unwatch()
	}
	// A link callback may still be running for this port (the watcher waits
	// for it only when the last port of a namespace leaves): mtuMu lets it
	// finish, and it sees closed afterwards; it also keeps a SetPortMTU
	// in flight from racing the restore.
	h.mtuMu.Lock()
	kept := false
	if restore && !gone && h.index != 0 && h.state != nil {
		if setMTU != 0 && setMTU != h.origMTU {
			if l, err := h.nl.LinkByIndex(h.index); err == nil && uint32(l.Attrs().MTU) == setMTU {
				if err := h.nl.LinkSetMTU(l, int(h.origMTU)); err != nil {
					h.log.Warn("cannot restore the original MTU", "mtu", h.origMTU, "err", err)
					kept = true
				}
			}
		}
		if broughtUp {
			if err := h.nl.LinkSetDown(h.linkRef()); err != nil && !errors.Is(err, unix.ENODEV) {
				h.log.Warn("cannot restore the admin-down state", "err", err)
				kept = true
			}
		}
		if h.restoreIPv6() { // closed without Leave
			kept = true
		}
	}
	if h.state != nil {
		if kept {
			h.log.Warn("the state file stays: the next start puts the interface back", "file", h.state.path)
		} else if err := h.state.remove(); err != nil {
			h.log.Warn("cannot remove the state file", "err", err)
		}
	}
	h.claim.release()
	if h.eth != nil {
		h.eth.Close()
	}
	h.nl.Close()
	h.ns.close()
	h.mtuMu.Unlock()
}

func (h *hostLink) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// Identity names the interface uniquely on this host: its network namespace
// and its name, so a lagg tells equal names in two namespaces apart.
func (h *hostLink) Identity() string {
	if k, err := nsKeyOf(h.ns.h); err == nil {
		return fmt.Sprintf("netns:%d:%d/%s", k.dev, k.ino, h.name)
	}
	return h.name
}

// Capabilities implements stack.LinkEndpoint. RX checksum offload: veth
// peers and the host kernel send TCP/UDP with partial checksums, which gVisor
// would reject (runsc makes the same choice). AFPacket and TAP claim the
// same, so a lagg mixing them (it ANDs capabilities) keeps it.
func (*hostLink) Capabilities() stack.LinkEndpointCapabilities {
	return stack.CapabilityResolutionRequired | stack.CapabilityRXChecksumOffload
}

// MaxHeaderLength implements stack.LinkEndpoint.
func (*hostLink) MaxHeaderLength() uint16 { return header.EthernetMinimumSize }

// ARPHardwareType implements stack.LinkEndpoint.
func (*hostLink) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareEther }

// AddHeader implements stack.LinkEndpoint, so a lagg may delegate to a port.
func (*hostLink) AddHeader(pkt *stack.PacketBuffer) { linkep.AddEthernetHeader(pkt) }

// ParseHeader implements stack.LinkEndpoint.
func (*hostLink) ParseHeader(pkt *stack.PacketBuffer) bool { return linkep.ParseEthernetHeader(pkt) }

// SetOnCloseAction implements stack.LinkEndpoint. As in fdbased it does
// nothing: a host port never closes itself; it reports linkep.Gone.
func (*hostLink) SetOnCloseAction(func()) {}

// openHost resolves the namespace and opens the interface's hostLink, with
// the logger naming the port.
func openHost(name, netns string, speedOverride uint64, runDir string, log *slog.Logger) (*hostLink, error) {
	if log == nil {
		log = slog.Default()
	}
	ns, err := openNetNS(netns)
	if err != nil {
		return nil, err
	}
	h, err := openHostLink(name, ns, speedOverride, runDir, log.With("port", name))
	if err != nil {
		ns.close()
		return nil, err
	}
	return h, nil
}
