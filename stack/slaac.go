package stack

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// SLAAC: gVisor's NDP handles router advertisements on a NIC once its NDP
// configuration says so (EnableSLAAC): it generates the addresses
// (RFC 4862, EUI-64 of the MAC) itself, and reports routers and on-link
// prefixes to the stack's ipv6.NDPDispatcher, whose owner installs the
// routes. RAWatcher is such a dispatcher: it keeps what each NIC learnt and
// hands changes to its owner on its own goroutine, since gVisor calls the
// dispatcher with its locks held and forbids calls back into the stack.

// RAInfo is what router advertisements taught one NIC.
type RAInfo struct {
	Routers   []netip.Addr   // default routers (link-local addresses)
	Prefixes  []netip.Prefix // on-link prefixes
	Addresses []netip.Prefix // addresses gVisor generated (SLAAC)
}

func (i RAInfo) clone() RAInfo {
	return RAInfo{Routers: slices.Clone(i.Routers), Prefixes: slices.Clone(i.Prefixes), Addresses: slices.Clone(i.Addresses)}
}

// RAWatcher implements ipv6.NDPDispatcher. Give it to NewNetstackWithNDP;
// SetOnChange receives each NIC's RAInfo after it changes.
type RAWatcher struct {
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once

	mu sync.Mutex
	// +checklocks:mu
	nics map[tcpip.NICID]*RAInfo
	// +checklocks:mu
	dirty map[tcpip.NICID]bool
	// +checklocks:mu
	onChange func(tcpip.NICID, RAInfo)
}

var _ ipv6.NDPDispatcher = (*RAWatcher)(nil)

// NewRAWatcher returns a watcher; Close stops its goroutine.
func NewRAWatcher() *RAWatcher {
	w := &RAWatcher{
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		nics: map[tcpip.NICID]*RAInfo{}, dirty: map[tcpip.NICID]bool{},
	}
	go w.routineNotify()
	return w
}

// SetOnChange has fn called, on the watcher's goroutine, with a NIC's
// RAInfo each time it changes; fn may call the stack.
func (w *RAWatcher) SetOnChange(fn func(tcpip.NICID, RAInfo)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onChange = fn
}

// Info returns what NIC nic learnt.
func (w *RAWatcher) Info(nic tcpip.NICID) RAInfo {
	w.mu.Lock()
	defer w.mu.Unlock()
	if i := w.nics[nic]; i != nil {
		return i.clone()
	}
	return RAInfo{}
}

// Forget drops what NIC nic learnt, without notifying.
func (w *RAWatcher) Forget(nic tcpip.NICID) {
	w.mu.Lock()
	defer w.mu.Unlock()
	delete(w.nics, nic)
	delete(w.dirty, nic)
}

// Close stops the watcher's goroutine and waits for it. It is idempotent.
func (w *RAWatcher) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

func (w *RAWatcher) routineNotify() {
	defer close(w.done)
	for {
		select {
		case <-w.stop:
			return
		case <-w.kick:
		}
		w.mu.Lock()
		fn := w.onChange
		changed := map[tcpip.NICID]RAInfo{}
		for nic := range w.dirty {
			if i := w.nics[nic]; i != nil {
				changed[nic] = i.clone()
			}
		}
		clear(w.dirty)
		w.mu.Unlock()
		if fn == nil {
			continue
		}
		for nic, info := range changed {
			fn(nic, info)
		}
	}
}

// update edits NIC nic's info and schedules the notification.
func (w *RAWatcher) update(nic tcpip.NICID, edit func(*RAInfo)) {
	w.mu.Lock()
	i := w.nics[nic]
	if i == nil {
		i = &RAInfo{}
		w.nics[nic] = i
	}
	edit(i)
	w.dirty[nic] = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

func addrOf(a tcpip.Address) netip.Addr {
	x, _ := netip.AddrFromSlice(a.AsSlice())
	return x
}

func prefixOf(s tcpip.Subnet) netip.Prefix {
	return netip.PrefixFrom(addrOf(s.ID()), s.Prefix())
}

// OnDuplicateAddressDetectionResult implements ipv6.NDPDispatcher.
func (*RAWatcher) OnDuplicateAddressDetectionResult(tcpip.NICID, tcpip.Address, gstack.DADResult) {}

// OnOffLinkRouteUpdated implements ipv6.NDPDispatcher: a default router
// (the only off-link routes an RA gives without route information options).
func (w *RAWatcher) OnOffLinkRouteUpdated(nic tcpip.NICID, s tcpip.Subnet, router tcpip.Address, _ header.NDPRoutePreference) {
	if s.Prefix() != 0 {
		return
	}
	r := addrOf(router)
	w.update(nic, func(i *RAInfo) {
		if !slices.Contains(i.Routers, r) {
			i.Routers = append(i.Routers, r)
		}
	})
}

// OnOffLinkRouteInvalidated implements ipv6.NDPDispatcher.
func (w *RAWatcher) OnOffLinkRouteInvalidated(nic tcpip.NICID, s tcpip.Subnet, router tcpip.Address) {
	if s.Prefix() != 0 {
		return
	}
	r := addrOf(router)
	w.update(nic, func(i *RAInfo) { i.Routers = slices.DeleteFunc(i.Routers, func(a netip.Addr) bool { return a == r }) })
}

// OnOnLinkPrefixDiscovered implements ipv6.NDPDispatcher.
func (w *RAWatcher) OnOnLinkPrefixDiscovered(nic tcpip.NICID, s tcpip.Subnet) {
	p := prefixOf(s)
	w.update(nic, func(i *RAInfo) {
		if !slices.Contains(i.Prefixes, p) {
			i.Prefixes = append(i.Prefixes, p)
		}
	})
}

// OnOnLinkPrefixInvalidated implements ipv6.NDPDispatcher.
func (w *RAWatcher) OnOnLinkPrefixInvalidated(nic tcpip.NICID, s tcpip.Subnet) {
	p := prefixOf(s)
	w.update(nic, func(i *RAInfo) {
		i.Prefixes = slices.DeleteFunc(i.Prefixes, func(q netip.Prefix) bool { return q == p })
	})
}

// OnAutoGenAddress implements ipv6.NDPDispatcher.
func (w *RAWatcher) OnAutoGenAddress(nic tcpip.NICID, a tcpip.AddressWithPrefix) gstack.AddressDispatcher {
	p := netip.PrefixFrom(addrOf(a.Address), a.PrefixLen)
	w.update(nic, func(i *RAInfo) {
		if !slices.Contains(i.Addresses, p) {
			i.Addresses = append(i.Addresses, p)
		}
	})
	return nil
}

// OnAutoGenAddressDeprecated implements ipv6.NDPDispatcher: the address
// stays until it is invalidated.
func (*RAWatcher) OnAutoGenAddressDeprecated(tcpip.NICID, tcpip.AddressWithPrefix) {}

// OnAutoGenAddressInvalidated implements ipv6.NDPDispatcher.
func (w *RAWatcher) OnAutoGenAddressInvalidated(nic tcpip.NICID, a tcpip.AddressWithPrefix) {
	p := netip.PrefixFrom(addrOf(a.Address), a.PrefixLen)
	w.update(nic, func(i *RAInfo) {
		i.Addresses = slices.DeleteFunc(i.Addresses, func(q netip.Prefix) bool { return q == p })
	})
}

// OnRecursiveDNSServerOption implements ipv6.NDPDispatcher (ignored).
func (*RAWatcher) OnRecursiveDNSServerOption(tcpip.NICID, []tcpip.Address, time.Duration) {}

// OnDNSSearchListOption implements ipv6.NDPDispatcher (ignored).
func (*RAWatcher) OnDNSSearchListOption(tcpip.NICID, []string, time.Duration) {}

// OnDHCPv6Configuration implements ipv6.NDPDispatcher (ignored: no DHCPv6).
func (*RAWatcher) OnDHCPv6Configuration(tcpip.NICID, ipv6.DHCPv6ConfigurationFromNDPRA) {}

// EnableSLAAC makes NIC id handle router advertisements (default routers,
// on-link prefixes, SLAAC addresses) or stop. Turning it on solicits
// routers at once: gVisor does so only when a NIC is enabled. Turning it
// off keeps what was learnt until it expires; the owner removes it.
func EnableSLAAC(s *gstack.Stack, id tcpip.NICID, on bool) error {
	ep, err := s.GetNetworkEndpoint(id, ipv6.ProtocolNumber)
	if err != nil {
		return fmt.Errorf("slaac: NIC %d: %s", id, err)
	}
	ndp, ok := ep.(ipv6.NDPEndpoint)
	if !ok {
		return fmt.Errorf("slaac: NIC %d has no NDP", id)
	}
	var c ipv6.NDPConfigurations
	if on {
		c = ipv6.DefaultNDPConfigurations()
		c.HandleRAs = ipv6.HandlingRAsAlwaysEnabled
		c.DiscoverDefaultRouters = true
		c.DiscoverOnLinkPrefixes = true
		c.AutoGenGlobalAddresses = true
		// An appliance answers on a stable address: no RFC 4941
		// temporary addresses.
		c.AutoGenTempGlobalAddresses = false
	}
	ndp.SetNDPConfigurations(c)
	if on {
		return SolicitRouters(s, id)
	}
	return nil
}

// ipv6AllRouters is ff02::2 and its multicast MAC.
var (
	ipv6AllRouters    = tcpip.AddrFrom16([16]byte{0xff, 0x02, 15: 2})
	ipv6AllRoutersMAC = tcpip.LinkAddress("\x33\x33\x00\x00\x00\x02")
)

// SolicitRouters sends a router solicitation from NIC id's link-local
// address (with its MAC as source link-layer option), or from :: without
// the option while it has none (RFC 4861 section 4.1).
func SolicitRouters(s *gstack.Stack, id tcpip.NICID) error {
	info, ok := s.NICInfo()[id]
	if !ok {
		return fmt.Errorf("slaac: no NIC %d", id)
	}
	src := header.IPv6Any
	var opts header.NDPOptionsSerializer
	if ll, ok := LinkLocal(info.LinkAddress); ok {
		want := ProtocolAddress(ll).AddressWithPrefix.Address
		for _, pa := range info.ProtocolAddresses {
			if pa.AddressWithPrefix.Address == want {
				src = want
				opts = header.NDPOptionsSerializer{header.NDPSourceLinkLayerAddressOption(info.LinkAddress)}
			}
		}
	}
	icmpLen := header.ICMPv6HeaderSize + header.NDPRSMinimumSize + opts.Length()
	b := make([]byte, header.IPv6MinimumSize+icmpLen)
	header.IPv6(b).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(icmpLen),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           src,
		DstAddr:           ipv6AllRouters,
	})
	icmp := header.ICMPv6(b[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6RouterSolicit)
	header.NDPRouterSolicit(icmp.MessageBody()).Options().Serialize(opts)
	icmp.SetChecksum(header.ICMPv6Checksum(header.ICMPv6ChecksumParams{Header: icmp, Src: src, Dst: ipv6AllRouters}))
	payload := buffer.MakeWithData(b)
	if err := s.WritePacketToRemote(id, ipv6AllRoutersMAC, ipv6.ProtocolNumber, payload); err != nil {
		if _, gone := err.(*tcpip.ErrUnknownDevice); gone {
			payload.Release()
		}
		return fmt.Errorf("slaac: router solicitation on NIC %d: %s", id, err)
	}
	return nil
}
