package host

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ulagg/ulagg/linkep"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// AFPacket is a linkep.Port on a host interface through an AF_PACKET socket. RX is
// gVisor's fdbased endpoint in recvmmsg mode; TX is sendmmsg from pooled
// scratch space (fdbased's allocates per call), with host GSO through
// PACKET_VNET_HDR when the socket takes it.
//
// The host interface keeps its own MAC. To receive the lagg's MAC the socket
// joins it as a PACKET_MR_UNICAST membership, which adds it to the NIC's
// unicast filter (or makes it promiscuous). When the lagg's MAC is not the
// interface's own (a configured mac, or ports other than the one whose MAC
// the lagg took), the kernel classes those frames PACKET_OTHERHOST and drops
// them after the socket got its copy, so the host does no IP processing of
// our traffic. Memberships die with the socket, so the interface returns to
// its own state when the port closes. The socket
// also joins the slow-protocols group 01:80:c2:00:00:02 so LACPDUs get past
// the multicast filter of real NICs.
//
// fdbased's RX dispatcher dies on any socket error, and the kernel reports
// ENETDOWN to packet sockets when their interface goes admin down. The port
// then builds a new fdbased endpoint on the same socket and attaches it to the
// same dispatcher, so RX resumes when the interface comes back up.
type AFPacket struct {
	*hostLink

	fd     int // the packet socket; closed by Close after every endpoint stopped
	gsoMax uint32
	wg     sync.WaitGroup // restart goroutines

	mu sync.Mutex
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// +checklocks:mu
	addr tcpip.LinkAddress
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	detach chan struct{} // closed by Attach(nil)
	// +checklocks:mu
	lastRestart time.Time
	// +checklocks:mu
	restartDelay time.Duration
	// +checklocks:mu
	cur *afInner // the receiving fdbased endpoint

	// txMu keeps Close from closing the socket under a writer.
	txMu sync.RWMutex
	// +checklocks:txMu
	fdClosed bool
}

// afInner is one fdbased endpoint on the port's socket. fdbased endpoints are
// single-use: once attached and stopped they are never attached again.
type afInner struct {
	ep       stack.LinkEndpoint
	efds     []int // leaked eventfds, see newFdbased
	efdsOnce sync.Once
	used     bool // attached once; guarded by AFPacket.mu
}

// closeEFDs closes the eventfds fdbased leaked; only once ep's dispatch
// goroutine has returned and ep will not be attached or detached again.
func (in *afInner) closeEFDs() { in.efdsOnce.Do(func() { closeEventFDs(in.efds) }) }

var (
	_ linkep.Port        = (*AFPacket)(nil)
	_ stack.GSOEndpoint  = (*AFPacket)(nil)
	_ stack.LinkEndpoint = (*AFPacket)(nil)
)

func init() {
	linkep.RegisterKind("afpacket", func(name string, o linkep.OpenOptions) (linkep.Port, error) {
		return OpenAFPacket(name, AFPacketOptions{DisableGSO: o.DisableGSO, SpeedMbps: o.SpeedMbps, Netns: o.Netns, Logger: o.Logger})
	})
}

// AFPacketOptions configures OpenAFPacket.
type AFPacketOptions struct {
	// DisableGSO keeps the socket without PACKET_VNET_HDR, so the port does
	// not offer host GSO.
	DisableGSO bool
	// SpeedMbps overrides the speed read through ethtool.
	SpeedMbps uint64
	// Netns is the network namespace of the interface: "" for the calling
	// thread's, a name from /var/run/netns, or a path.
	Netns string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

const (
	afSockBuf  = 4 << 20
	afGSOMax   = 1 << 16
	ethHdrSize = header.EthernetMinimumSize
)

// slowProtocolsMAC is the destination of LACPDUs (IEEE 802.3 Annex 57A).
var slowProtocolsMAC = []byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x02}

// OpenAFPacket opens host interface name as a port. The interface is brought
// admin up if it is down (Close puts it back down).
func OpenAFPacket(name string, opts AFPacketOptions) (*AFPacket, error) {
	h, err := openHost(name, opts.Netns, opts.SpeedMbps, opts.Logger)
	if err != nil {
		return nil, err
	}
	p := &AFPacket{hostLink: h, fd: -1}
	if err := p.open(opts); err != nil {
		p.Close()
		return nil, fmt.Errorf("afpacket %s: %w", name, err)
	}
	return p, nil
}

func (p *AFPacket) open(opts AFPacketOptions) error {
	link, err := p.nl.LinkByName(p.name)
	if err != nil {
		return err
	}
	if a := link.Attrs(); a.EncapType != "ether" || len(a.HardwareAddr) != 6 {
		return fmt.Errorf("not an Ethernet interface (%s)", a.EncapType)
	}
	if err := p.attach(link); err != nil {
		return err
	}
	vnet := !opts.DisableGSO
	if p.fd, vnet, err = openPacketSocket(p.ns, p.index, vnet); err != nil {
		return err
	}
	if vnet {
		p.gsoMax = afGSOMax
	}
	if err := p.membership(unix.PACKET_ADD_MEMBERSHIP, unix.PACKET_MR_MULTICAST, slowProtocolsMAC); err != nil {
		p.log.Warn("cannot join the slow-protocols group: LACP may not work", "err", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.addr = tcpip.LinkAddress(p.hw)
	in, err := p.newInnerLocked()
	if err != nil {
		return err
	}
	p.cur = in
	return nil
}

// openPacketSocket creates the socket in ns and binds it to ifindex. vnet asks
// for PACKET_VNET_HDR; the result says whether the socket took it.
func openPacketSocket(ns *netNS, ifindex int, vnet bool) (int, bool, error) {
	fd := -1
	err := ns.do(func() error {
		var err error
		// Protocol 0: nothing is queued before bind.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, false, fmt.Errorf("packet socket: %w", err)
	}
	if vnet && unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1) != nil {
		vnet = false
	}
	// The host's own transmissions on the interface are not ours to receive.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("PACKET_IGNORE_OUTGOING: %w", err)
	}
	for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
		// FORCE passes rmem_max/wmem_max but needs CAP_NET_ADMIN.
		if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], afSockBuf) != nil {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], afSockBuf)
		}
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("bind packet socket: %w", err)
	}
	return fd, vnet, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (p *AFPacket) membership(op int, typ uint16, mac []byte) error {
	mreq := unix.PacketMreq{Ifindex: int32(p.index), Type: typ, Alen: uint16(len(mac))}
	copy(mreq.Address[:], mac)
	return unix.SetsockoptPacketMreq(p.fd, unix.SOL_PACKET, op, &mreq)
}

// newInnerLocked builds a fresh fdbased endpoint on the socket.
//
// +checklocks:p.mu
func (p *AFPacket) newInnerLocked() (*afInner, error) {
	in := &afInner{}
	ep, efds, err := newFdbased(&fdbased.Options{
		FDs:            []int{p.fd},
		MTU:            p.MTU(),
		EthernetHeader: true,
		Address:        p.addr,
		GSOMaxSize:     p.gsoMax,
		// The readv dispatcher stops for good at the first unicast frame
		// for another MAC; recvmmsg skips it.
		PacketDispatchMode: fdbased.RecvMMsg,
		// veth peers hand over CHECKSUM_PARTIAL frames.
		RXChecksumOffload: true,
		// One processor delivers inline; more would start goroutines in
		// New that leak with the readv dispatcher New discards.
		ProcessorsPerChannel: 1,
		// One socket needs no fanout group.
		PreConfigured:  true,
		IsPacketSocket: []bool{true},
		ClosedFunc:     func(err tcpip.Error) { p.rxStopped(in, err) },
	})
	if err != nil {
		return nil, fmt.Errorf("fdbased: %w", err)
	}
	in.ep, in.efds = ep, efds
	return in, nil
}

// rxStopped is fdbased's ClosedFunc. It runs on the dying dispatch goroutine,
// so it only schedules the restart and never calls into the stack.
func (p *AFPacket) rxStopped(in *afInner, err tcpip.Error) {
	if err == nil {
		return // a normal stop
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.dispatcher == nil || p.cur != in {
		return
	}
	// Expected when the interface goes admin down (ENETDOWN).
	p.log.Info("receive stopped, restarting it", "err", err)
	p.wg.Add(1)
	go p.restart(in, p.detach)
}

// restart replaces the dead endpoint old with a new one on the same socket.
func (p *AFPacket) restart(old *afInner, detach chan struct{}) {
	defer p.wg.Done()
	p.mu.Lock()
	// Persistent errors must not spin: back off when restarts come fast.
	if time.Since(p.lastRestart) < time.Second {
		p.restartDelay = min(max(2*p.restartDelay, 10*time.Millisecond), time.Second)
	} else {
		p.restartDelay = 0
	}
	delay := p.restartDelay
	p.mu.Unlock()
	if delay > 0 {
		select {
		case <-detach:
			return
		case <-time.After(delay):
		}
	}

	p.mu.Lock()
	if p.closed || p.dispatcher == nil || p.cur != old {
		// Attach(nil) owns old now.
		p.mu.Unlock()
		return
	}
	p.lastRestart = time.Now()
	// Take the pending error (ENETDOWN) so the new dispatcher doesn't die of it.
	_, _ = unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	in, err := p.newInnerLocked()
	if err != nil {
		p.mu.Unlock()
		p.log.Error("cannot restart receive", "err", err)
		return
	}
	in.used = true
	in.ep.Attach(p.dispatcher)
	p.cur = in
	p.mu.Unlock()

	// Nobody reaches old any more: once its goroutine is gone its eventfds can go.
	old.ep.Wait()
	old.closeEFDs()
}

// Attach implements stack.LinkEndpoint.Attach. Attach(nil) stops receiving
// and waits for the dispatch goroutines; a later Attach starts a new fdbased
// endpoint, since those cannot be reattached.
func (p *AFPacket) Attach(d stack.NetworkDispatcher) {
	p.mu.Lock()
	if d == nil {
		if p.dispatcher == nil {
			p.mu.Unlock()
			return
		}
		p.dispatcher = nil
		close(p.detach)
		cur := p.cur
		p.mu.Unlock()
		// A literal nil: fdbased stops and waits for its dispatcher.
		cur.ep.Attach(nil)
		p.wg.Wait()
		cur.closeEFDs()
		return
	}
	defer p.mu.Unlock()
	if p.closed {
		p.log.Warn("Attach on a closed port ignored")
		return
	}
	if p.dispatcher != nil {
		return // as fdbased: already attached
	}
	cur := p.cur
	if cur.used {
		in, err := p.newInnerLocked()
		if err != nil {
			p.log.Error("cannot attach", "err", err)
			return
		}
		p.cur = in
		cur = in
	}
	cur.used = true
	p.dispatcher = d
	p.detach = make(chan struct{})
	cur.ep.Attach(d)
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (p *AFPacket) IsAttached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait.
func (p *AFPacket) Wait() {
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	if cur != nil {
		cur.ep.Wait()
	}
	p.wg.Wait()
}

// Close implements stack.LinkEndpoint.Close: it detaches if needed, closes
// the socket, puts the interface's admin state back and stops watching it.
func (p *AFPacket) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	attached := p.dispatcher != nil
	p.mu.Unlock()
	if attached {
		p.Attach(nil)
	}
	p.wg.Wait()
	p.txMu.Lock()
	p.fdClosed = true
	p.txMu.Unlock()
	p.mu.Lock()
	cur := p.cur
	p.mu.Unlock()
	if cur != nil {
		cur.ep.Wait()
		cur.closeEFDs()
	}
	if p.fd >= 0 {
		unix.Close(p.fd)
	}
	p.hostLink.close(true)
}

// WritePackets implements stack.LinkEndpoint.WritePackets. pkts hold complete
// frames; the caller keeps its references.
func (p *AFPacket) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	p.txMu.RLock()
	defer p.txMu.RUnlock()
	if p.fdClosed || p.fd < 0 {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return writeFrames(p.fd, p.gsoMax != 0, pkts.AsSlice())
}

// LinkAddress implements stack.LinkEndpoint.LinkAddress. It is the host
// interface's MAC until the lagg sets its own.
func (p *AFPacket) LinkAddress() tcpip.LinkAddress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress: frames for
// addr are received from now on, through fdbased's filter and a unicast
// membership on the socket.
func (p *AFPacket) SetLinkAddress(addr tcpip.LinkAddress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.addr
	if addr == old || p.closed {
		return
	}
	own := tcpip.LinkAddress(p.hw)
	if addr != own && isUnicastMAC(addr) {
		if err := p.membership(unix.PACKET_ADD_MEMBERSHIP, unix.PACKET_MR_UNICAST, []byte(addr)); err != nil {
			p.log.Warn("cannot receive the lagg MAC", "mac", addr, "err", err)
		}
	}
	p.cur.ep.SetLinkAddress(addr)
	p.addr = addr
	if old != own && isUnicastMAC(old) {
		if err := p.membership(unix.PACKET_DROP_MEMBERSHIP, unix.PACKET_MR_UNICAST, []byte(old)); err != nil {
			p.log.Debug("cannot drop the old MAC", "mac", old, "err", err)
		}
	}
}

func isUnicastMAC(a tcpip.LinkAddress) bool { return len(a) == 6 && a[0]&1 == 0 }

// GSOMaxSize implements stack.GSOEndpoint.
func (p *AFPacket) GSOMaxSize() uint32 { return p.gsoMax }

// SupportedGSO implements stack.GSOEndpoint.
func (p *AFPacket) SupportedGSO() stack.SupportedGSO {
	if p.gsoMax == 0 {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}
