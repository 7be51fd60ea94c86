package appliance

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	ustack "github.com/ulagg/ulagg/stack"
)

// No route back. A SYN from a source the stack has no route to (a client
// on another subnet and no default route) cannot be answered: gVisor finds
// no route for the SYN-ACK, drops the SYN and writes its own warning line
// (tcp.Endpoint.handleListenSegment() failed ... no route to host) to
// stderr for every one. The SYN guard asks routeBack first: a SYN whose
// source has no route out of the NIC it came in on is dropped and counted
// there, and one ulagg line per noRouteLogEvery says which address and how
// to fix it. gVisor without forwarding answers only out of the NIC a
// segment came in on, so the check is per NIC, as FindRoute's.
//
// The routes are a snapshot published by the RouteTable's change hook;
// the per-SYN check loads it and scans it without locking or allocating.

const noRouteLogEvery = 10 * time.Second

type routeBack struct {
	log   *slog.Logger
	epoch time.Time
	snap  atomic.Pointer[[]routeBackEntry] // nil until the first publish: pass everything
	drops atomic.Uint64                    // SYNs dropped: no route back
	last  atomic.Int64                     // ns since epoch of the last line; 0 = none
	quiet atomic.Uint64                    // drops not logged since that line
	// replies counts the udp-echo replies gVisor found no route for
	// (services.go): the same fix, the same line.
	replies atomic.Uint64
}

type routeBackEntry struct {
	nic tcpip.NICID
	to  netip.Prefix
}

func newRouteBack(log *slog.Logger) *routeBack {
	return &routeBack{log: log, epoch: time.Now()}
}

// publish is the RouteTable's change hook.
func (rb *routeBack) publish(installed []ustack.Route) {
	es := make([]routeBackEntry, len(installed))
	for i, r := range installed {
		es[i] = routeBackEntry{nic: r.NIC, to: r.To}
	}
	rb.snap.Store(&es)
}

// routable reports whether the stack can answer src on nic.
func (rb *routeBack) routable(nic tcpip.NICID, src netip.Addr) bool {
	p := rb.snap.Load()
	if p == nil || src.IsLinkLocalUnicast() && src.Is6() {
		return true // gVisor routes IPv6 link-local without the table
	}
	for _, e := range *p {
		if e.nic == nic && e.to.Contains(src) {
			return true
		}
	}
	return false
}

// admitSYN decides on an admitted SYN whose IP header starts b (as
// tcpInfo read it): false drops it, counted and reported.
func (rb *routeBack) admitSYN(nic tcpip.NICID, proto tcpip.NetworkProtocolNumber, b []byte) bool {
	var src, dst netip.Addr
	var tcp []byte
	switch proto {
	case header.IPv4ProtocolNumber:
		src, dst = netip.AddrFrom4([4]byte(b[12:16])), netip.AddrFrom4([4]byte(b[16:20]))
		tcp = b[int(b[0]&0xf)*4:]
	case header.IPv6ProtocolNumber:
		src, dst = netip.AddrFrom16([16]byte(b[8:24])), netip.AddrFrom16([16]byte(b[24:40]))
		tcp = b[header.IPv6MinimumSize:]
	default:
		return true
	}
	if rb.routable(nic, src) {
		return true
	}
	rb.drops.Add(1)
	rb.report(src, "a reply", netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4])))
	return false
}

// noReply counts a reply a service could not send to dst for want of a
// route, and reports it as a SYN's; from is the service's address (its
// port alone when it listens on every address).
func (rb *routeBack) noReply(dst netip.Addr, what string, from netip.AddrPort) {
	rb.replies.Add(1)
	rb.report(dst, what, from)
}

// isNoRoute reports whether err (from a gonet write) is gVisor's
// "no route": it finds no route to the destination.
func isNoRoute(err error) bool {
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Err == nil {
		return false
	}
	// gonet turns tcpip errors into strings (errors.New(err.String())).
	switch oe.Err.Error() {
	case (&tcpip.ErrHostUnreachable{}).String(), (&tcpip.ErrNetworkUnreachable{}).String(), (&tcpip.ErrNoNet{}).String():
		return true
	}
	return false
}

// report writes one line per noRouteLogEvery, counting the rest: src got
// no answer to what it sent to from.
func (rb *routeBack) report(src netip.Addr, what string, from netip.AddrPort) {
	now := int64(time.Since(rb.epoch)) + 1
	last := rb.last.Load()
	if last != 0 && now-last < int64(noRouteLogEvery) || !rb.last.CompareAndSwap(last, now) {
		rb.quiet.Add(1)
		return
	}
	fix := "ulagg route add default GATEWAY"
	if src.Is6() {
		fix = "ulagg route add -inet6 default GATEWAY"
	}
	at := from.String()
	if !from.Addr().IsValid() || from.Addr().IsUnspecified() {
		at = fmt.Sprintf("port %d", from.Port())
	}
	rb.log.Warn(fmt.Sprintf("no route to %s (%s from %s); add one: %s", src, what, at, fix),
		"client", src.String(), "similar_suppressed", rb.quiet.Swap(0))
}

// NoRouteDrops returns how many TCP SYNs the appliance dropped because it
// had no route back to their source.
func (a *Appliance) NoRouteDrops() uint64 { return a.noRoute.drops.Load() }

// NoRouteReplyDrops returns how many udp-echo replies the appliance could
// not send because it had no route to their destination.
func (a *Appliance) NoRouteReplyDrops() uint64 { return a.noRoute.replies.Load() }
