// Package dhcp is a DHCPv4 client (RFC 2131) for one NIC of a gVisor stack:
// it gets a lease, keeps the leased address on the NIC in step with it,
// renews it at T1 (unicast to the server), rebinds at T2 (broadcast) and
// starts over when it expires or a server refuses it; Close releases it.
// The messages are insomniacslk/dhcp's dhcpv4 types; the exchange runs over
// the gVisor stack, not over host sockets:
//
//   - Broadcasts (DISCOVER, REQUEST while selecting or rebinding) are whole
//     IPv4/UDP datagrams written to the Ethernet broadcast address with
//     Stack.WritePacketToRemote, so the NIC needs no address and no route
//     while it has none (the source is 0.0.0.0, or the leased address when
//     rebinding).
//   - Replies arrive on a UDP endpoint bound to port 68 of the NIC: gVisor
//     accepts 255.255.255.255 on every enabled IPv4 NIC, and the client sets
//     the broadcast flag until it has an address, so servers broadcast
//     their OFFER and ACK.
//   - A renewal (and the RELEASE) is an ordinary unicast datagram from the
//     leased address through that endpoint.
//
// The owner learns of leases through Config.OnEvent and installs what the
// address alone does not cover: default route, MTU.
package dhcp

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	gstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/ulagg/ulagg/internal/clock"
	ustack "github.com/ulagg/ulagg/stack"
)

// Ports of RFC 2131.
const (
	ClientPort = 68
	ServerPort = 67
)

// Clock is the client's time source, the lagg's too; tests pass a fake
// one. nil in Config means the real clock.
type Clock = clock.Clock

// Timer is a pending Clock.AfterFunc call.
type Timer = clock.Timer

// State is a client state of RFC 2131 figure 5.
type State int

// Client states. Stopped is after Close.
const (
	Init State = iota
	Selecting
	Requesting
	Bound
	Renewing
	Rebinding
	Stopped
)

var stateNames = [...]string{"init", "selecting", "requesting", "bound", "renewing", "rebinding", "stopped"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Lease is what a server granted.
type Lease struct {
	Address netip.Prefix // the leased address with the subnet's length
	Server  netip.Addr   // the server identifier
	Router  netip.Addr   // the first router option; invalid if none
	DNS     []netip.Addr
	MTU     uint16        // the interface MTU option; 0 if none
	Time    time.Duration // lease time
	T1, T2  time.Duration // renewal and rebinding times
	// Start is when the client sent the request the lease answers (the
	// lease runs from then, RFC 2131 section 4.4.1), by the client's clock.
	Start time.Time
}

// RenewAt, RebindAt and ExpiresAt are the lease's deadlines.
func (l Lease) RenewAt() time.Time   { return l.Start.Add(l.T1) }
func (l Lease) RebindAt() time.Time  { return l.Start.Add(l.T2) }
func (l Lease) ExpiresAt() time.Time { return l.Start.Add(l.Time) }

// EventKind says what happened to the lease.
type EventKind int

// Lease events.
const (
	// Acquired: a new lease (from INIT); the address is on the NIC.
	Acquired EventKind = iota + 1
	// Renewed: a server extended the lease (Event.Old has the previous one;
	// its address may differ, in which case the NIC has the new one now).
	Renewed
	// Lost: the lease expired or a server refused it; the address is gone
	// from the NIC and the client starts over.
	Lost
	// Released: Close gave the lease back; the address is gone.
	Released
)

func (k EventKind) String() string {
	switch k {
	case Acquired:
		return "acquired"
	case Renewed:
		return "renewed"
	case Lost:
		return "lost"
	case Released:
		return "released"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event reports a lease change.
type Event struct {
	Kind   EventKind
	Lease  Lease // the lease now (Acquired, Renewed) or the one that ended
	Old    Lease // Renewed: the lease before
	Reason string
}

// Config configures a Client.
type Config struct {
	Stack *gstack.Stack
	NIC   tcpip.NICID
	// Hostname is sent as option 12 when set.
	Hostname string
	Clock    Clock
	Logger   *slog.Logger
	// AddAddress and RemoveAddress put the leased address (with its
	// subnet's route) on the NIC and take it off. nil means
	// stack.AddAddress and stack.RemoveAddress, straight into gVisor; an
	// owner whose routes live in a stack.RouteTable passes the table's.
	AddAddress, RemoveAddress func(netip.Prefix) error
	// OnEvent receives lease changes on the client's goroutine, in order.
	// It must not block for long and must not call Close or Wait.
	OnEvent func(Event)
}

// Status is a snapshot of the client.
type Status struct {
	State State
	// Lease is valid when HasLease (Bound, Renewing, Rebinding).
	Lease    Lease
	HasLease bool
	// Counters since Start.
	Acquired, Renewals, Lost, NAKs uint64
	// Ignored counts replies that were malformed or not for this client.
	Ignored uint64
}

// Client runs the DHCPv4 exchange for one NIC. Its goroutines are
// routineRun (the state machine, which alone touches the machine fields)
// and routineReceive (reads the port 68 endpoint); Close stops both.
type Client struct {
	cfg   Config
	clock Clock
	log   *slog.Logger

	conn *gonet.UDPConn // set by Start

	rx        chan *dhcpv4.DHCPv4 // parsed replies for routineRun
	wake      chan struct{}       // a timer fired
	done      chan struct{}       // closed by Close
	closeOnce sync.Once
	started   bool
	wg        sync.WaitGroup

	mu sync.Mutex
	// +checklocks:mu
	status Status

	// Machine fields: routineRun only.
	m machine
}

// New returns a client for cfg.NIC; Start runs it.
func New(cfg Config) (*Client, error) {
	if cfg.Stack == nil {
		return nil, errors.New("dhcp: no stack")
	}
	if _, ok := cfg.Stack.NICInfo()[cfg.NIC]; !ok {
		return nil, fmt.Errorf("dhcp: NIC %d does not exist", cfg.NIC)
	}
	c := &Client{
		cfg:   cfg,
		clock: cfg.Clock,
		log:   cfg.Logger,
		rx:    make(chan *dhcpv4.DHCPv4, 16),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	if c.clock == nil {
		c.clock = clock.Real{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.cfg.AddAddress == nil {
		c.cfg.AddAddress = func(p netip.Prefix) error { return ustack.AddAddress(cfg.Stack, cfg.NIC, p) }
	}
	if c.cfg.RemoveAddress == nil {
		c.cfg.RemoveAddress = func(p netip.Prefix) error { return ustack.RemoveAddress(cfg.Stack, cfg.NIC, p) }
	}
	c.log = c.log.With("nic", cfg.NIC)
	return c, nil
}

// Start binds UDP port 68 on the NIC and starts the exchange. It fails if
// the port is taken there (another client on the same NIC).
func (c *Client) Start() error {
	if c.started {
		return errors.New("dhcp: already started")
	}
	conn, err := bindClientPort(c.cfg.Stack, c.cfg.NIC)
	if err != nil {
		return fmt.Errorf("dhcp: bind port %d on NIC %d: %w", ClientPort, c.cfg.NIC, err)
	}
	c.conn = conn
	c.started = true
	c.wg.Add(2)
	go c.routineReceive()
	go c.routineRun()
	return nil
}

// Close releases the lease if the client holds one (DHCPRELEASE to the
// server, address removed, a Released event), stops the client and waits
// for its goroutines. It is idempotent.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.done) })
	c.Wait()
}

// Wait waits until the client's goroutines have exited (after Close).
func (c *Client) Wait() { c.wg.Wait() }

// Status returns the client's state and lease.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Lease.DNS = append([]netip.Addr(nil), s.Lease.DNS...)
	return s
}

// routineReceive parses what arrives on port 68 and hands it to routineRun.
// It ends when Close closes the endpoint.
func (c *Client) routineReceive() {
	defer c.wg.Done()
	buf := make([]byte, 1500)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		if err != nil {
			select {
			case <-c.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			c.log.Debug("dhcp: read", "err", err)
			continue
		}
		msg, err := dhcpv4.FromBytes(buf[:n])
		if err != nil || msg.OpCode != dhcpv4.OpcodeBootReply {
			c.countBad()
			continue
		}
		select {
		case c.rx <- msg:
		case <-c.done:
			return
		}
	}
}

// countBad counts a reply that was not a BOOTREPLY or did not parse; it is
// ignored, as RFC 2131 asks.
func (c *Client) countBad() {
	c.mu.Lock()
	c.status.Ignored++
	c.mu.Unlock()
}

// routineRun is the state machine.
func (c *Client) routineRun() {
	defer c.wg.Done()
	c.m.init(c)
	c.m.step(c.clock.Now())
	for {
		select {
		case <-c.done:
			c.m.stop()
			// Closing the endpoint unblocks routineReceive, which may be
			// blocked handing over a reply: done is closed, so it returns.
			c.conn.Close()
			return
		case msg := <-c.rx:
			c.m.receive(msg, c.clock.Now())
		case <-c.wake:
			c.m.step(c.clock.Now())
		}
	}
}

// signal wakes routineRun; a timer calls it.
func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// bindClientPort binds UDP port 68 on nic only (SO_BINDTODEVICE), so that
// every interface of the stack can run its own client: gVisor reserves a
// port per device only for sockets bound to one.
func bindClientPort(s *gstack.Stack, nic tcpip.NICID) (*gonet.UDPConn, error) {
	var wq waiter.Queue
	ep, terr := s.NewEndpoint(udp.ProtocolNumber, ipv4.ProtocolNumber, &wq)
	if terr != nil {
		return nil, errors.New(terr.String())
	}
	if terr := ep.SocketOptions().SetBindToDevice(int32(nic)); terr != nil {
		ep.Close()
		return nil, errors.New(terr.String())
	}
	if terr := ep.Bind(tcpip.FullAddress{NIC: nic, Port: ClientPort}); terr != nil {
		ep.Close()
		return nil, errors.New(terr.String())
	}
	return gonet.NewUDPConn(&wq, ep), nil
}
