package dhcp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Retransmission (RFC 2131 section 4.1: 4 s doubling to 64 s; the ±1 s
// randomisation is left out, as one client per NIC cannot synchronise with
// anything). A REQUEST unanswered maxRequests times sends the client back
// to INIT.
const (
	firstBackoff = 4 * time.Second
	maxBackoff   = 64 * time.Second
	maxRequests  = 4
	// renewFloor bounds how often RENEWING and REBINDING retransmit (RFC
	// 2131 section 4.4.5: half the time left, at least 60 s); a lease whose
	// T1 is shorter than two floors uses T1/2 so that it still retries.
	renewFloor = 60 * time.Second
)

// requested are the options the client asks for.
var requested = []dhcpv4.OptionCode{
	dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer,
	dhcpv4.OptionInterfaceMTU, dhcpv4.OptionIPAddressLeaseTime,
	dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue,
}

// machine is the RFC 2131 state machine; routineRun alone uses it.
type machine struct {
	c        *Client
	state    State
	xid      dhcpv4.TransactionID
	offer    *dhcpv4.DHCPv4 // the offer REQUESTING asks for
	lease    Lease
	has      bool // lease is valid
	attempts int  // sends in this state
	nextSend time.Time
	sentAt   time.Time // last REQUEST: the start of the lease it gets
	timer    Timer
	// installed: the client added lease.Address to the NIC (and so
	// removes it); false when it was there already, as a static address.
	installed bool
}

func (m *machine) init(c *Client) { m.c = c; m.state = Init }

// step runs what the clock says is due: lease deadlines, retransmissions.
func (m *machine) step(now time.Time) {
	if m.state == Bound && !now.Before(m.lease.RenewAt()) {
		m.enter(Renewing, now)
	}
	if m.state == Renewing && !now.Before(m.lease.RebindAt()) {
		m.enter(Rebinding, now)
	}
	if m.state == Rebinding && !now.Before(m.lease.ExpiresAt()) {
		m.lose("lease expired")
	}
	if m.state == Requesting && !now.Before(m.nextSend) && m.attempts >= maxRequests {
		m.c.log.Info("dhcp: no answer to REQUEST; starting over", "server", serverOf(m.offer))
		m.state = Init
	}
	if m.state == Init {
		m.enter(Selecting, now)
	}
	if !now.Before(m.nextSend) {
		m.send(now)
	}
	m.arm(now)
}

// enter moves to state s with a fresh transaction and a send due now.
func (m *machine) enter(s State, now time.Time) {
	m.state = s
	m.attempts = 0
	m.nextSend = now
	if s != Requesting { // REQUEST keeps the OFFER's transaction
		m.xid = newXID()
	}
	m.publish()
}

// send sends the state's message and schedules its retransmission.
func (m *machine) send(now time.Time) {
	var err error
	switch m.state {
	case Selecting:
		err = m.sendDiscover()
		m.nextSend = now.Add(backoff(m.attempts))
	case Requesting:
		err = m.sendSelectingRequest()
		m.sentAt = now
		m.nextSend = now.Add(backoff(m.attempts))
	case Renewing:
		err = m.sendRenew(false)
		m.sentAt = now
		m.nextSend = now.Add(m.retransmit(now, m.lease.RebindAt()))
	case Rebinding:
		err = m.sendRenew(true)
		m.sentAt = now
		m.nextSend = now.Add(m.retransmit(now, m.lease.ExpiresAt()))
	default:
		return
	}
	m.attempts++
	if err != nil {
		m.c.log.Warn("dhcp: send", "state", m.state, "err", err)
	}
}

func backoff(attempt int) time.Duration {
	d := firstBackoff << min(attempt, 4)
	return min(d, maxBackoff)
}

// retransmit is how long RENEWING/REBINDING wait before asking again.
func (m *machine) retransmit(now, deadline time.Time) time.Duration {
	floor := min(renewFloor, max(m.lease.T1/2, time.Second))
	return max(deadline.Sub(now)/2, floor)
}

// arm sets the timer for the next thing due.
func (m *machine) arm(now time.Time) {
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	var next time.Time
	switch m.state {
	case Selecting, Requesting:
		next = m.nextSend
	case Bound:
		next = m.lease.RenewAt()
	case Renewing:
		next = earliest(m.nextSend, m.lease.RebindAt())
	case Rebinding:
		next = earliest(m.nextSend, m.lease.ExpiresAt())
	default:
		return
	}
	m.timer = m.c.clock.AfterFunc(max(next.Sub(now), 0), m.c.signal)
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// receive handles a reply.
func (m *machine) receive(msg *dhcpv4.DHCPv4, now time.Time) {
	if msg.TransactionID != m.xid || !bytes.Equal(msg.ClientHWAddr, m.mac()) {
		m.c.countBad()
		return
	}
	switch typ := msg.MessageType(); {
	case m.state == Selecting && typ == dhcpv4.MessageTypeOffer:
		if _, err := parseLease(msg, now, netip.Addr{}); err != nil {
			m.c.log.Info("dhcp: ignoring offer", "err", err)
			m.c.countBad()
			return
		}
		m.offer = msg
		m.enter(Requesting, now)
		m.send(now)
	case (m.state == Requesting || m.state == Renewing || m.state == Rebinding) && typ == dhcpv4.MessageTypeAck:
		m.bind(msg)
	case (m.state == Requesting || m.state == Renewing || m.state == Rebinding) && typ == dhcpv4.MessageTypeNak:
		m.c.mu.Lock()
		m.c.status.NAKs++
		m.c.mu.Unlock()
		m.c.log.Info("dhcp: server refused", "state", m.state, "message", msg.Message())
		if m.has {
			m.lose("server sent NAK: " + msg.Message())
		}
		// Start over, but not at once: a server that refuses whatever
		// it offers would otherwise keep the exchange spinning.
		m.enter(Selecting, now)
		m.nextSend = now.Add(firstBackoff)
		m.arm(now)
		return
	default:
		m.c.countBad()
		return
	}
	m.arm(now)
}

// bind takes an ACK.
func (m *machine) bind(ack *dhcpv4.DHCPv4) {
	fallback := serverOf(m.offer)
	if m.has {
		fallback = m.lease.Server
	}
	lease, err := parseLease(ack, m.sentAt, fallback)
	if err != nil {
		m.c.log.Info("dhcp: ignoring ACK", "err", err)
		m.c.countBad()
		return
	}
	old, had := m.lease, m.has
	if had && old.Address != lease.Address {
		m.uninstall()
	}
	if !had || old.Address != lease.Address {
		m.install(lease.Address)
	}
	m.lease, m.has, m.state, m.offer = lease, true, Bound, nil
	m.publish()
	ev := Event{Kind: Acquired, Lease: lease}
	if had {
		ev = Event{Kind: Renewed, Lease: lease, Old: old}
	}
	m.c.mu.Lock()
	if had {
		m.c.status.Renewals++
	} else {
		m.c.status.Acquired++
	}
	m.c.mu.Unlock()
	m.c.log.Info("dhcp: "+ev.Kind.String(), "address", lease.Address, "server", lease.Server, "lease", lease.Time, "router", lease.Router)
	m.emit(ev)
}

// lose ends the lease without releasing it (expired or refused).
func (m *machine) lose(reason string) {
	lease := m.lease
	m.uninstall()
	m.has, m.lease, m.state = false, Lease{}, Init
	m.c.mu.Lock()
	m.c.status.Lost++
	m.c.mu.Unlock()
	m.publish()
	m.c.log.Warn("dhcp: lease lost", "address", lease.Address, "reason", reason)
	m.emit(Event{Kind: Lost, Lease: lease, Reason: reason})
}

// stop releases the lease, if any, and stops the machine.
func (m *machine) stop() {
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.has {
		lease := m.lease
		if err := m.sendRelease(); err != nil {
			m.c.log.Warn("dhcp: release", "err", err)
		}
		m.uninstall()
		m.has, m.lease = false, Lease{}
		m.c.log.Info("dhcp: lease released", "address", lease.Address, "server", lease.Server)
		m.emit(Event{Kind: Released, Lease: lease})
	}
	m.state = Stopped
	m.publish()
}

func (m *machine) install(addr netip.Prefix) {
	err := m.c.cfg.AddAddress(addr)
	m.installed = err == nil
	if err != nil {
		m.c.log.Warn("dhcp: leased address not added (already there?)", "address", addr, "err", err)
	}
}

func (m *machine) uninstall() {
	if !m.installed {
		return
	}
	m.installed = false
	if err := m.c.cfg.RemoveAddress(m.lease.Address); err != nil {
		m.c.log.Warn("dhcp: remove leased address", "address", m.lease.Address, "err", err)
	}
}

func (m *machine) emit(ev Event) {
	if m.c.cfg.OnEvent != nil {
		m.c.cfg.OnEvent(ev)
	}
}

// publish copies the machine's state for Status.
func (m *machine) publish() {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	m.c.status.State = m.state
	m.c.status.Lease = m.lease
	m.c.status.HasLease = m.has
}

// mac is the NIC's MAC now: the client follows MAC changes.
func (m *machine) mac() net.HardwareAddr {
	return net.HardwareAddr(m.c.cfg.Stack.NICInfo()[m.c.cfg.NIC].LinkAddress)
}

func (m *machine) common(typ dhcpv4.MessageType) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(m.xid),
		dhcpv4.WithHwAddr(m.mac()),
		dhcpv4.WithMessageType(typ),
	}
	if typ != dhcpv4.MessageTypeRelease {
		mods = append(mods, dhcpv4.WithRequestedOptions(requested...), dhcpv4.WithOption(dhcpv4.OptMaxMessageSize(1500)))
		if h := m.c.cfg.Hostname; h != "" {
			mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(h)))
		}
	}
	return mods
}

func (m *machine) sendDiscover() error {
	msg, err := dhcpv4.New(append(m.common(dhcpv4.MessageTypeDiscover), dhcpv4.WithBroadcast(true))...)
	if err != nil {
		return err
	}
	return m.c.broadcast(netip.IPv4Unspecified(), msg.ToBytes())
}

func (m *machine) sendSelectingRequest() error {
	if m.offer == nil {
		return errors.New("no offer")
	}
	msg, err := dhcpv4.New(append(m.common(dhcpv4.MessageTypeRequest),
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(m.offer.YourIPAddr)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(m.offer.ServerIdentifier())),
	)...)
	if err != nil {
		return err
	}
	return m.c.broadcast(netip.IPv4Unspecified(), msg.ToBytes())
}

// sendRenew sends the REQUEST of RENEWING (unicast to the server) or of
// REBINDING (broadcast): ciaddr set, no server identifier.
func (m *machine) sendRenew(broadcast bool) error {
	ciaddr := m.lease.Address.Addr()
	msg, err := dhcpv4.New(append(m.common(dhcpv4.MessageTypeRequest), dhcpv4.WithClientIP(ciaddr.AsSlice()))...)
	if err != nil {
		return err
	}
	if broadcast {
		return m.c.broadcast(ciaddr, msg.ToBytes())
	}
	return m.c.unicast(m.lease.Server, msg.ToBytes())
}

func (m *machine) sendRelease() error {
	m.xid = newXID()
	msg, err := dhcpv4.New(append(m.common(dhcpv4.MessageTypeRelease),
		dhcpv4.WithClientIP(m.lease.Address.Addr().AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(m.lease.Server.AsSlice())),
	)...)
	if err != nil {
		return err
	}
	if m.lease.Address.Contains(m.lease.Server) {
		m.c.resolve(m.lease.Server, m.lease.Address.Addr(), releaseResolveTimeout)
	}
	return m.c.unicast(m.lease.Server, msg.ToBytes())
}

func newXID() dhcpv4.TransactionID {
	xid, err := dhcpv4.GenerateTransactionID()
	if err != nil {
		panic(fmt.Sprintf("dhcp: crypto/rand failed: %v", err)) // crypto/rand does not fail on Linux
	}
	return xid
}

func serverOf(offer *dhcpv4.DHCPv4) netip.Addr {
	if offer == nil {
		return netip.Addr{}
	}
	a, _ := netip.AddrFromSlice(offer.ServerIdentifier().To4())
	return a
}
