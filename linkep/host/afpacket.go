package host

import (
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/ulagg/ulagg/linkep"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// AFPacket is a linkep.Port on a host interface through an AF_PACKET socket.
// RX is a goroutine of our own reading recvmmsg batches into pooled buffers
// (afpacket_rx.go); TX is sendmmsg from pooled scratch space
// (afpacket_tx.go). With PACKET_VNET_HDR, when the socket takes it, TX does
// host GSO and every frame in both directions carries a virtio-net header.
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
// The receive goroutine runs while the port is attached. It survives socket
// errors (the kernel reports ENETDOWN to packet sockets when their interface
// goes admin down) and resumes when frames come again; Attach(nil) stops it
// through an eventfd and waits for it, and the port can be attached again.
type AFPacket struct {
	*hostLink

	fd     int // the packet socket; closed by Close after the receive goroutine stopped
	efd    int // eventfd that stops the receive goroutine; closed by Close
	gsoMax uint32
	rx     *afRx // receive state, used by one receive goroutine at a time

	// addr is LinkAddress, read by the receive goroutine for every batch.
	// Stores are serialised by mu (they come with membership changes).
	addr atomic.Pointer[tcpip.LinkAddress]

	kernelDrops atomic.Uint64 // PACKET_STATISTICS tp_drops, accumulated

	// Foreign counts unicast frames for another MAC, dropped.
	Foreign atomic.Uint64
	// RxErrors counts frames dropped because they were too short to hold
	// an Ethernet header or did not fit the receive buffers.
	RxErrors atomic.Uint64

	// attachMu serialises Attach and Close, which wait for the receive
	// goroutine with it held; that goroutine takes neither attachMu nor mu.
	// Lock order: attachMu, then mu.
	attachMu sync.Mutex

	mu sync.Mutex
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// +checklocks:mu
	closed bool
	// +checklocks:mu
	done chan struct{} // closed when the latest receive goroutine returned; nil if none ever ran

	// fdMu keeps Close from closing the socket under a writer or a
	// statistics read.
	fdMu sync.RWMutex
	// +checklocks:fdMu
	fdClosed bool
}

var (
	_ linkep.Port          = (*AFPacket)(nil)
	_ linkep.KernelDropper = (*AFPacket)(nil)
	_ stack.GSOEndpoint    = (*AFPacket)(nil)
	_ stack.LinkEndpoint   = (*AFPacket)(nil)
)

func init() {
	linkep.RegisterKind("afpacket", func(name string, o linkep.OpenOptions) (linkep.Port, error) {
		return OpenAFPacket(name, AFPacketOptions{DisableGSO: o.DisableGSO, SpeedMbps: o.SpeedMbps, Netns: o.Netns, RuntimeDir: o.RuntimeDir, CarrierPoll: o.CarrierPoll, Logger: o.Logger})
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
	// RuntimeDir holds the port's state file (what to put back on the
	// interface after a crash); "" is DefaultRuntimeDir.
	RuntimeDir string
	// CarrierPoll: 0 is DefaultCarrierPoll, negative rtnetlink events only
	// (carrier_poll.go).
	CarrierPoll time.Duration
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
	h, err := openHost(name, opts.Netns, opts.SpeedMbps, opts.RuntimeDir, opts.Logger)
	if err != nil {
		return nil, err
	}
	p := &AFPacket{hostLink: h, fd: -1, efd: -1}
	if err := p.open(opts); err != nil {
		p.Close()
		return nil, fmt.Errorf("afpacket %s: %w", name, err)
	}
	p.pollCarrier(opts.CarrierPoll)
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
	if p.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return fmt.Errorf("eventfd: %w", err)
	}
	if err := p.membership(unix.PACKET_ADD_MEMBERSHIP, unix.PACKET_MR_MULTICAST, slowProtocolsMAC); err != nil {
		p.log.Warn("cannot join the slow-protocols group: LACP may not work", "err", err)
	}
	own := tcpip.LinkAddress(p.hw)
	p.addr.Store(&own)
	p.rx = newAFRx(p.fd, p.efd, vnet)
	return nil
}

// openPacketSocket creates the socket in ns and binds it to ifindex. vnet asks
// for PACKET_VNET_HDR; the result says whether the socket took it.
func openPacketSocket(ns *netNS, ifindex int, vnet bool) (int, bool, error) {
	fd := -1
	err := ns.do(func() error {
		var err error
		// Protocol 0: nothing is queued before bind.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
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
	// Per-frame metadata: the VLAN tag the kernel stripped, checksum status.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		unix.Close(fd)
		return -1, false, fmt.Errorf("PACKET_AUXDATA: %w", err)
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

// Attach implements stack.LinkEndpoint.Attach. A dispatcher starts the
// receive goroutine (a second one while attached is ignored, as fdbased
// does); nil stops it and waits for it. The port can be attached again.
func (p *AFPacket) Attach(d stack.NetworkDispatcher) {
	p.attachMu.Lock()
	defer p.attachMu.Unlock()
	if d == nil {
		p.detachLocked()
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.log.Warn("Attach on a closed port ignored")
		return
	}
	if p.dispatcher != nil {
		return
	}
	p.dispatcher = d
	done := make(chan struct{})
	p.done = done
	go p.receive(d, done)
}

// detachLocked stops the receive goroutine, if any, and waits for it. It
// does not hold mu meanwhile: delivering a frame may call back into the port
// (LinkAddress, IsAttached, WritePackets).
//
// +checklocks:p.attachMu
func (p *AFPacket) detachLocked() {
	p.mu.Lock()
	attached, done := p.dispatcher != nil, p.done
	p.dispatcher = nil
	p.mu.Unlock()
	if !attached {
		return
	}
	p.rx.stop.Store(true)
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	if _, err := unix.Write(p.efd, one[:]); err != nil {
		// Cannot happen with a counter far from overflow; waiting would hang.
		panic(fmt.Sprintf("afpacket %s: stop receive: %v", p.name, err))
	}
	<-done
	// Reset for the next attach.
	var buf [8]byte
	_, _ = unix.Read(p.efd, buf[:])
	p.rx.stop.Store(false)
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (p *AFPacket) IsAttached() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait: it waits for the receive
// goroutine, which returns only after Attach(nil).
func (p *AFPacket) Wait() {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done != nil {
		<-done
	}
}

// Close implements stack.LinkEndpoint.Close: it detaches if needed, closes
// the socket, puts the interface's admin state back and stops watching it.
func (p *AFPacket) Close() {
	p.attachMu.Lock()
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.attachMu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	p.detachLocked()
	p.attachMu.Unlock()

	p.fdMu.Lock()
	if p.fd >= 0 {
		p.readStats() // the last drops, for KernelDrops after Close
		unix.Close(p.fd)
	}
	if p.efd >= 0 {
		unix.Close(p.efd)
	}
	p.fdClosed = true
	p.fdMu.Unlock()
	if p.rx != nil {
		p.rx.release()
	}
	p.stopCarrierPoll()
	p.hostLink.close(true)
}

// WritePackets implements stack.LinkEndpoint.WritePackets. pkts hold complete
// frames; the caller keeps its references.
func (p *AFPacket) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	p.fdMu.RLock()
	defer p.fdMu.RUnlock()
	if p.fdClosed || p.fd < 0 {
		return 0, &tcpip.ErrClosedForSend{}
	}
	return writeFrames(p.fd, p.gsoMax != 0, pkts.AsSlice())
}

// KernelDrops implements linkep.KernelDropper: frames the kernel dropped
// because the socket's receive buffer was full, since the port opened. The
// receive goroutine collects the kernel's counter every 100 ms while busy;
// this reads it too, so the total is current. After Close it is the last
// total.
func (p *AFPacket) KernelDrops() uint64 {
	p.fdMu.RLock()
	if !p.fdClosed && p.fd >= 0 {
		p.readStats()
	}
	p.fdMu.RUnlock()
	return p.kernelDrops.Load()
}

// readStats adds the kernel's drop counter, which reading resets, to
// kernelDrops. The socket must stay open meanwhile: the caller holds fdMu or
// is the receive goroutine (Close waits for it before closing the socket).
func (p *AFPacket) readStats() {
	var st unix.TpacketStats
	l := uint32(unix.SizeofTpacketStats)
	_, _, errno := unix.RawSyscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&l)), 0)
	if errno == 0 && st.Drops != 0 {
		p.kernelDrops.Add(uint64(st.Drops))
	}
}

// LinkAddress implements stack.LinkEndpoint.LinkAddress. It is the host
// interface's MAC until the lagg sets its own.
func (p *AFPacket) LinkAddress() tcpip.LinkAddress {
	if a := p.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress: frames for
// addr are received from now on, through the receive filter and a unicast
// membership on the socket.
func (p *AFPacket) SetLinkAddress(addr tcpip.LinkAddress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.LinkAddress()
	if addr == old || p.closed {
		return
	}
	own := tcpip.LinkAddress(p.hw)
	if addr != own && isUnicastMAC(addr) {
		if err := p.membership(unix.PACKET_ADD_MEMBERSHIP, unix.PACKET_MR_UNICAST, []byte(addr)); err != nil {
			p.log.Warn("cannot receive the lagg MAC", "mac", addr, "err", err)
		}
	}
	p.addr.Store(&addr)
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
