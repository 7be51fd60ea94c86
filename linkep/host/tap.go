package host

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/songgao/water"
	"github.com/ulagg/ulagg/linkep"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/rawfile"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TAP is a linkep.Port on a TAP device: the appliance is the far end of a virtual
// wire whose near end is the host kernel's TAP interface.
//
// RX does not use fdbased: a TAP fd is not a socket, so fdbased would use its
// readv dispatcher, which stops for good at the first unicast frame for
// another MAC at the pinned gVisor version. A read goroutine readvs each frame
// into pooled views, drops unicast for other MACs (counted in Foreign) and
// delivers the rest. TX is a writev per frame from a preallocated iovec array.
//
// Unless DisableGSO, the TAP is reopened with a virtio-net header and
// offloads (tap_vnet.go): the port offers host GSO as AFPacket does, and the
// kernel hands it partially checksummed frames and TCP super-frames up to
// 64 KB, which gVisor takes whole, as AFPacket's GRO'd frames.
type TAP struct {
	*hostLink

	ifce    *water.Interface
	file    *os.File // water's, or ours with a vnet header
	fd      int      // file's descriptor, for writev
	rc      syscall.RawConn
	created bool   // ulagg created the TAP: it disappears when the fd closes
	vnet    bool   // frames carry a virtio-net header both ways
	gsoMax  uint32 // 0 without vnet
	rx      *tapRx // the read goroutine's alone

	// Foreign counts unicast frames for another MAC, dropped.
	Foreign atomic.Uint64
	// RxErrors counts frames too short to hold an Ethernet header.
	RxErrors atomic.Uint64

	addr atomic.Pointer[tcpip.LinkAddress] // read per frame
	// own is the MAC the TAP started with, still received after
	// SetLinkAddress: a lagg's link monitor probes with it. Set in open.
	own tcpip.LinkAddress
	wg  sync.WaitGroup // the read goroutine

	mu sync.Mutex
	// +checklocks:mu
	dispatcher stack.NetworkDispatcher
	// +checklocks:mu
	stop chan struct{}
	// +checklocks:mu
	closed bool

	txMu sync.Mutex
	// +checklocks:txMu
	txClosed bool
	// +checklocks:txMu
	iov [64]unix.Iovec
	// +checklocks:txMu
	vnetHdr [vnetHdrSize]byte
}

var (
	_ linkep.Port        = (*TAP)(nil)
	_ stack.GSOEndpoint  = (*TAP)(nil)
	_ stack.LinkEndpoint = (*TAP)(nil)
)

func init() {
	linkep.RegisterKind("tap", func(name string, o linkep.OpenOptions) (linkep.Port, error) {
		return OpenTAP(name, TAPOptions{DisableGSO: o.DisableGSO, SpeedMbps: o.SpeedMbps, Netns: o.Netns, RuntimeDir: o.RuntimeDir, CarrierPoll: o.CarrierPoll, Logger: o.Logger})
	})
}

// TAPOptions configures OpenTAP.
type TAPOptions struct {
	// DisableGSO keeps water's plain TAP fd (no virtio-net header), so
	// the port offers no host GSO and the kernel sends it neither TSO
	// super-frames nor partial checksums.
	DisableGSO bool
	// SpeedMbps overrides the speed read through ethtool (a TAP says 10).
	SpeedMbps uint64
	// CarrierPoll: 0 is DefaultCarrierPoll, negative rtnetlink events only.
	CarrierPoll time.Duration
	// Netns is the network namespace of the TAP: "" for the calling
	// thread's, a name from /var/run/netns, or a path.
	Netns string
	// RuntimeDir holds the port's state file (what to put back on the
	// interface after a crash); "" is DefaultRuntimeDir.
	RuntimeDir string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// OpenTAP attaches to the persistent TAP device name (as made by `ip tuntap
// add`), which Close leaves in place, or creates it, in which case it goes
// away with the port. The TAP is brought admin up. Its MAC stays the host
// side's; the port starts with a random locally administered MAC.
func OpenTAP(name string, opts TAPOptions) (*TAP, error) {
	h, err := openHost(name, opts.Netns, opts.SpeedMbps, opts.RuntimeDir, opts.Logger)
	if err != nil {
		return nil, err
	}
	t := &TAP{hostLink: h, fd: -1, vnet: !opts.DisableGSO}
	if err := t.open(); err != nil {
		t.Close()
		return nil, fmt.Errorf("tap %s: %w", name, err)
	}
	t.pollCarrier(opts.CarrierPoll)
	return t, nil
}

func (t *TAP) open() error {
	existing, err := t.nl.LinkByName(t.name)
	switch {
	case err == nil:
		if tt, ok := existing.(*netlink.Tuntap); !ok || tt.Mode != netlink.TUNTAP_MODE_TAP {
			return fmt.Errorf("exists and is not a TAP (%s)", existing.Type())
		}
	case errors.As(err, new(netlink.LinkNotFoundError)):
		t.created = true
	default:
		return err
	}
	err = t.ns.do(func() error {
		var err error
		t.ifce, err = waterNew(water.Config{
			DeviceType: water.TAP,
			// water always sets TUNSETPERSIST: keep an existing TAP
			// persistent, and a created one until the vnet reopen.
			PlatformSpecificParams: water.PlatformSpecificParams{Name: t.name, Persist: !t.created || t.vnet},
		})
		if err != nil || !t.vnet {
			return err
		}
		// water's queue must go before ours can attach (tap_vnet.go).
		t.ifce.Close()
		t.ifce = nil
		t.file, err = openTunVnet(t.name, !t.created)
		if err != nil && t.created {
			// Persistent until now: remove it by hand.
			if l, lerr := t.nl.LinkByName(t.name); lerr == nil {
				_ = t.nl.LinkDel(l)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	if t.ifce != nil {
		f, ok := t.ifce.ReadWriteCloser.(*os.File)
		if !ok {
			return errors.New("water returned no *os.File")
		}
		t.file = f
	}
	if t.vnet {
		t.gsoMax = afGSOMax
	}
	t.rx = newTapRx(t.vnet)
	rc, err := t.file.SyscallConn()
	if err != nil {
		return err
	}
	t.rc = rc
	// Not f.Fd(): it would make the descriptor blocking.
	if err := rc.Control(func(fd uintptr) {
		t.fd = int(fd)
		unix.CloseOnExec(int(fd)) // water opens it without O_CLOEXEC
	}); err != nil {
		return err
	}
	link, err := t.nl.LinkByName(t.name)
	if err != nil {
		return err
	}
	var mac [6]byte
	if _, err := rand.Read(mac[:]); err != nil {
		return err
	}
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	t.own = tcpip.LinkAddress(mac[:])
	t.setAddr(t.own)
	return t.attach(link)
}

func (t *TAP) setAddr(a tcpip.LinkAddress) { t.addr.Store(&a) }

// Attach implements stack.LinkEndpoint.Attach. A dispatcher starts the read
// goroutine; nil stops it (a read deadline wakes it) and waits for it. The
// TAP can be attached again afterwards.
func (t *TAP) Attach(d stack.NetworkDispatcher) {
	t.mu.Lock()
	if d == nil {
		stop := t.stop
		t.dispatcher, t.stop = nil, nil
		t.mu.Unlock()
		if stop != nil {
			close(stop)
			_ = t.file.SetReadDeadline(time.Unix(1, 0))
			t.wg.Wait()
		}
		return
	}
	defer t.mu.Unlock()
	if t.closed {
		t.log.Warn("Attach on a closed port ignored")
		return
	}
	if t.dispatcher != nil {
		return
	}
	_ = t.file.SetReadDeadline(time.Time{})
	t.dispatcher, t.stop = d, make(chan struct{})
	t.wg.Add(1)
	go t.routineRead(d, t.stop)
}

// routineRead reads frames until stop is closed or the TAP fails.
func (t *TAP) routineRead(d stack.NetworkDispatcher, stop chan struct{}) {
	defer t.wg.Done()
	r := t.rx
	defer r.slot.release()
	for {
		r.slot.refill()
		err := t.rc.Read(r.readFn)
		switch {
		case err != nil:
		case r.errno == unix.EINTR:
			continue
		case r.errno == unix.EINVAL || r.errno == unix.EFAULT:
			// The frame did not fit the buffer; the kernel dropped it.
			t.RxErrors.Add(1)
			continue
		case r.errno != 0:
			err = r.errno
		}
		if err == nil && r.n == 0 {
			err = io.EOF
		}
		if err != nil {
			select {
			case <-stop:
				return
			default:
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue // a deadline left over from a previous detach
			}
			if errors.Is(err, unix.EBADFD) {
				// The TAP was deleted; the watcher reports linkep.Gone.
				t.log.Info("TAP deleted, receive stopped")
				return
			}
			t.log.Warn("TAP read failed, receive stopped", "err", err)
			return
		}
		t.deliver(d, r, r.n)
	}
}

// deliver hands the n bytes r read (vnet header included) to d as a packet,
// which takes the views it fills; a dropped frame leaves them in r.
func (t *TAP) deliver(d stack.NetworkDispatcher, r *tapRx, n int) {
	var vnetFlags byte
	if r.vnet {
		n -= vnetHdrSize
		vnetFlags = r.slot.vnet[0]
	}
	if n < ethHdrSize || n > tapRxCap {
		t.RxErrors.Add(1)
		return
	}
	dst := r.slot.views[0].AsSlice()[afRxHeadroom:][:header.EthernetAddressSize]
	ownMAC := false // marked PacketOtherHost (linkep.Port's contract)
	if dst[0]&1 == 0 && string(dst) != string(*t.addr.Load()) {
		if string(dst) != string(t.own) {
			t.Foreign.Add(1)
			return
		}
		ownMAC = true
	}
	pkt := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: r.slot.take(n, 0, 0)})
	// The kernel says the checksum is good or left for us to trust
	// (partial, as on a TSO super-frame).
	pkt.RXChecksumValidated = vnetFlags&(vnetFlagNeedsCsum|vnetFlagDataValid) != 0
	linkep.ParseEthernetHeader(pkt) // n >= ethHdrSize
	if ownMAC {
		pkt.PktType = tcpip.PacketOtherHost
	}
	d.DeliverNetworkPacket(pkt.NetworkProtocolNumber, pkt)
	pkt.DecRef()
}

// WritePackets implements stack.LinkEndpoint.WritePackets: one writev per
// frame, virtio-net header first when the TAP has one. The caller keeps its
// references.
func (t *TAP) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	t.txMu.Lock()
	defer t.txMu.Unlock()
	if t.txClosed {
		return 0, &tcpip.ErrClosedForSend{}
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		if err := t.writeLocked(pkt); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// +checklocks:t.txMu
func (t *TAP) writeLocked(pkt *stack.PacketBuffer) tcpip.Error {
	iov := t.iov[:0]
	if t.vnet {
		if !fillVnetHdr(&t.vnetHdr, pkt) {
			return &tcpip.ErrNotSupported{}
		}
		iov = append(iov, rawfile.IovecFromBytes(t.vnetHdr[:]))
	}
	hdr := len(iov)
	iov = appendFrameIovecs(iov, pkt, cap(iov))
	if len(iov) == hdr {
		return nil
	}
	errno := rawfile.NonBlockingWriteIovec(t.fd, iov)
	clear(iov) // don't pin the packet's memory
	if errno != 0 {
		return tcpip.TranslateErrno(errno)
	}
	return nil
}

// IsAttached implements stack.LinkEndpoint.IsAttached.
func (t *TAP) IsAttached() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dispatcher != nil
}

// Wait implements stack.LinkEndpoint.Wait.
func (t *TAP) Wait() { t.wg.Wait() }

// Close implements stack.LinkEndpoint.Close: it detaches if needed and closes
// the TAP (which removes it if ulagg created it), then puts a persistent
// TAP's admin state back.
func (t *TAP) Close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	t.mu.Unlock()
	t.Attach(nil)
	t.txMu.Lock()
	t.txClosed = true
	t.txMu.Unlock()
	// Stop watching first: closing a created TAP deletes it, which is no news.
	t.stopCarrierPoll()
	if t.unwatch != nil {
		t.unwatch()
		t.unwatch = nil
	}
	if t.file != nil {
		t.file.Close() // water's or ours (water's Close closes just it)
	} else if t.ifce != nil {
		t.ifce.Close()
	}
	t.hostLink.close(!t.created)
}

// LinkAddress implements stack.LinkEndpoint.LinkAddress.
func (t *TAP) LinkAddress() tcpip.LinkAddress {
	if a := t.addr.Load(); a != nil {
		return *a
	}
	return ""
}

// SetLinkAddress implements stack.LinkEndpoint.SetLinkAddress.
func (t *TAP) SetLinkAddress(addr tcpip.LinkAddress) { t.setAddr(addr) }

// GSOMaxSize implements stack.GSOEndpoint.
func (t *TAP) GSOMaxSize() uint32 { return t.gsoMax }

// SupportedGSO implements stack.GSOEndpoint: host GSO through the
// virtio-net header, unless DisableGSO.
func (t *TAP) SupportedGSO() stack.SupportedGSO {
	if t.gsoMax == 0 {
		return stack.GSONotSupported
	}
	return stack.HostGSOSupported
}
