package lagg_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"gvisor.dev/gvisor/pkg/tcpip"

	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/linkep"
	"github.com/ulagg/ulagg/linkep/linkeptest"
)

// newLagg returns a lagg with no ports and no stack, closed when the test
// ends.
func newLagg(t *testing.T, tweak func(o *lagg.Options)) *lagg.Lagg {
	t.Helper()
	o := options(fmt.Sprintf("lagg%d", nextID()), "failover")
	if tweak != nil {
		tweak(&o)
	}
	l, err := lagg.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

// wireEnds returns the A ends of n new wires with the given MTUs; end i
// has MAC mac(1, i).
func wireEnds(mtus ...uint32) []*linkeptest.WireEnd {
	id := nextID()
	var ends []*linkeptest.WireEnd
	for i, mtu := range mtus {
		w := linkeptest.NewWire(fmt.Sprintf("m%d.%d", id, i), fmt.Sprintf("n%d.%d", id, i), mac(1, i), mac(2, i),
			linkeptest.WireOptions{MTU: mtu, Logger: discard})
		ends = append(ends, w.A)
	}
	return ends
}

func addPorts(t *testing.T, l *lagg.Lagg, ports ...linkep.Port) {
	t.Helper()
	for _, p := range ports {
		if err := l.AddPort(p, lagg.DefaultPriority); err != nil {
			t.Fatal(err)
		}
	}
}

func remove(t *testing.T, l *lagg.Lagg, name string) {
	t.Helper()
	if err := l.RemovePort(name); err != nil {
		t.Fatal(err)
	}
}

func checkMTUs(t *testing.T, what string, want uint32, ports ...linkep.Port) {
	t.Helper()
	for _, p := range ports {
		if got := p.MTU(); got != want {
			t.Errorf("%s: port %s MTU: got %d, want %d", what, p.Name(), got, want)
		}
	}
}

func TestMTUFirstPortSetsIt(t *testing.T) {
	l := newLagg(t, nil)
	e := wireEnds(9000, 1500)
	addPorts(t, l, e[0])
	if got := l.MTU(); got != 9000 {
		t.Fatalf("lagg MTU after the first port: got %d, want the port's 9000", got)
	}
	addPorts(t, l, e[1])
	checkMTUs(t, "second port added", 9000, e[0], e[1])
	if got := portStatus(t, l, e[1].Name()).MTU; got != 9000 {
		t.Errorf("status MTU of the second port: got %d, want 9000", got)
	}
	remove(t, l, e[1].Name())
	checkMTUs(t, "second port removed", 1500, e[1])
	if got := l.MTU(); got != 9000 {
		t.Errorf("lagg MTU after removing a port: got %d, want 9000", got)
	}
}

// TestMTUConfiguredIsForced is NetBSD's ATF lagg_mtu: ports of 1460 and
// 1440 in a lagg of 1450 run at 1450 and get their own MTU back on removal.
func TestMTUConfiguredIsForced(t *testing.T) {
	l := newLagg(t, func(o *lagg.Options) { o.MTU = 1450 })
	e := wireEnds(1460, 1440)
	addPorts(t, l, e[0], e[1])
	if got := l.MTU(); got != 1450 {
		t.Errorf("lagg MTU: got %d, want the configured 1450", got)
	}
	checkMTUs(t, "members", 1450, e[0], e[1])
	remove(t, l, e[0].Name())
	remove(t, l, e[1].Name())
	checkMTUs(t, "first port removed", 1460, e[0])
	checkMTUs(t, "second port removed", 1440, e[1])
}

func TestSetLaggMTUAppliesToAll(t *testing.T) {
	l := newLagg(t, nil)
	e := wireEnds(1500, 1500, 1500)
	addPorts(t, l, e[0], e[1], e[2])
	if err := l.Update(func(c *lagg.Config) { c.MTU = 4000 }); err != nil {
		t.Fatal(err)
	}
	checkMTUs(t, "after SetLaggMTU(4000)", 4000, e[0], e[1], e[2])
	if got := l.Status().MTU; got != 4000 {
		t.Errorf("status MTU: got %d, want 4000", got)
	}
	remove(t, l, e[2].Name())
	checkMTUs(t, "removed", 1500, e[2])
	for _, bad := range []uint32{67, 65536} {
		if err := l.Update(func(c *lagg.Config) { c.MTU = bad }); err == nil {
			t.Errorf("SetLaggMTU(%d): got nil error, want out of range", bad)
		}
	}
	if got := l.MTU(); got != 4000 {
		t.Errorf("lagg MTU after refused changes: got %d, want 4000", got)
	}
}

// TestSetLaggMTURollback: one port refuses the new MTU, so every port keeps
// the old one, whether the refusing port comes first or last.
func TestSetLaggMTURollback(t *testing.T) {
	for _, tc := range []struct {
		name string
		prio uint16 // of the refusing port; the others have the default
	}{
		{"refuser first", 1},
		{"refuser last", 60000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLagg(t, nil)
			e := wireEnds(1500, 1500, 1500)
			refuser := &refusingPort{WireEnd: e[2], max: 3000}
			addPorts(t, l, e[0], e[1])
			if err := l.AddPort(refuser, tc.prio); err != nil {
				t.Fatal(err)
			}
			err := l.Update(func(c *lagg.Config) { c.MTU = 9000 })
			if !errors.Is(err, errMTURefused) {
				t.Fatalf("SetLaggMTU(9000): got %v, want an error wrapping %v", err, errMTURefused)
			}
			if !strings.Contains(err.Error(), refuser.Name()) {
				t.Errorf("error %q does not name the refusing port %s", err, refuser.Name())
			}
			checkMTUs(t, "after the refused change", 1500, e[0], e[1], refuser)
			if got := l.MTU(); got != 1500 {
				t.Errorf("lagg MTU after the refused change: got %d, want 1500", got)
			}
			if err := l.Update(func(c *lagg.Config) { c.MTU = 2000 }); err != nil {
				t.Fatalf("SetLaggMTU(2000), which every port takes: %v", err)
			}
			checkMTUs(t, "after SetLaggMTU(2000)", 2000, e[0], e[1], refuser)
		})
	}
}

func TestPortMTULockedWhileMember(t *testing.T) {
	l := newLagg(t, nil)
	e := wireEnds(1500)
	addPorts(t, l, e[0])
	err := e[0].TrySetMTU(1400)
	if !errors.Is(err, linkep.ErrMTULocked) {
		t.Fatalf("TrySetMTU on a member: got %v, want %v", err, linkep.ErrMTULocked)
	}
	checkMTUs(t, "after the refused TrySetMTU", 1500, e[0])
	e[0].SetMTU(1400) // the stack.LinkEndpoint way: refused and logged
	checkMTUs(t, "after a refused SetMTU", 1500, e[0])
	remove(t, l, e[0].Name())
	if err := e[0].TrySetMTU(1400); err != nil {
		t.Fatalf("TrySetMTU after removal: %v", err)
	}
	checkMTUs(t, "after TrySetMTU on a former member", 1400, e[0])
}

// TestAddPortRefusingMTU: a port that cannot take the lagg's MTU is not
// added, the lagg is unchanged and the port is free for another lagg.
func TestAddPortRefusingMTU(t *testing.T) {
	l := newLagg(t, func(o *lagg.Options) { o.MTU = 9000 })
	e := wireEnds(9000, 1500)
	addPorts(t, l, e[0])
	before := l.Status()
	refuser := &refusingPort{WireEnd: e[1], max: 1500}
	err := l.AddPort(refuser, 1)
	if !errors.Is(err, errMTURefused) {
		t.Fatalf("AddPort: got %v, want an error wrapping %v", err, errMTURefused)
	}
	after := l.Status()
	if got, want := l.Ports(), []string{e[0].Name()}; !slices.Equal(got, want) {
		t.Errorf("ports: got %v, want %v", got, want)
	}
	if after.MTU != before.MTU || after.MAC != before.MAC || after.TxPort != before.TxPort {
		t.Errorf("lagg changed: got MTU %d MAC %v TxPort %q, want %d %v %q",
			after.MTU, after.MAC, after.TxPort, before.MTU, before.MAC, before.TxPort)
	}
	checkMTUs(t, "refused port", 1500, refuser)
	if got, want := refuser.LinkAddress(), mac(1, 1); got != want {
		t.Errorf("refused port MAC: got %v, want its own %v", got, want)
	}
	other := newLagg(t, func(o *lagg.Options) { o.MTU = 1500 })
	if err := other.AddPort(refuser, lagg.DefaultPriority); err != nil {
		t.Errorf("adding the refused port to a lagg it suits: %v", err)
	}
}

func isLocalUnicast(m tcpip.LinkAddress) bool {
	return len(m) == 6 && m[0]&1 == 0 && m[0]&2 != 0
}

func checkMACs(t *testing.T, what string, want tcpip.LinkAddress, ports ...linkep.Port) {
	t.Helper()
	for _, p := range ports {
		if got := p.LinkAddress(); got != want {
			t.Errorf("%s: port %s MAC: got %v, want %v", what, p.Name(), got, want)
		}
	}
}

// TestMACFollowsPorts: with no MAC configured the lagg uses its first
// port's MAC on every port, moves to the next port's MAC when that port
// leaves, and gives each removed port its own MAC back.
func TestMACFollowsPorts(t *testing.T) {
	l := newLagg(t, nil)
	random := l.LinkAddress()
	if !isLocalUnicast(random) {
		t.Fatalf("MAC of a lagg with no ports: got %v, want a locally administered unicast address", random)
	}
	e := wireEnds(1500, 1500, 1500)
	addPorts(t, l, e[0], e[1], e[2])
	if got := l.LinkAddress(); got != mac(1, 0) {
		t.Fatalf("lagg MAC: got %v, want the first port's %v", got, mac(1, 0))
	}
	checkMACs(t, "members", mac(1, 0), e[0], e[1], e[2])
	if got := l.Status().MAC; got != mac(1, 0) {
		t.Errorf("status MAC: got %v, want %v", got, mac(1, 0))
	}

	remove(t, l, e[0].Name())
	if got := l.LinkAddress(); got != mac(1, 1) {
		t.Errorf("lagg MAC after removing its port: got %v, want the next port's %v", got, mac(1, 1))
	}
	checkMACs(t, "remaining members", mac(1, 1), e[1], e[2])
	checkMACs(t, "removed port", mac(1, 0), e[0])

	remove(t, l, e[2].Name())
	if got := l.LinkAddress(); got != mac(1, 1) {
		t.Errorf("lagg MAC after removing another port: got %v, want %v", got, mac(1, 1))
	}
	checkMACs(t, "second removed port", mac(1, 2), e[2])

	remove(t, l, e[1].Name())
	if got := l.LinkAddress(); got != random {
		t.Errorf("lagg MAC with no ports left: got %v, want its random %v back", got, random)
	}
}

func TestMACConfiguredWins(t *testing.T) {
	want := tcpip.LinkAddress("\x02\x12\x34\x56\x78\x9a")
	l := newLagg(t, func(o *lagg.Options) { o.MAC = want })
	e := wireEnds(1500, 1500)
	addPorts(t, l, e[0], e[1])
	if got := l.LinkAddress(); got != want {
		t.Errorf("lagg MAC: got %v, want the configured %v", got, want)
	}
	checkMACs(t, "members", want, e[0], e[1])
	remove(t, l, e[0].Name())
	if got := l.LinkAddress(); got != want {
		t.Errorf("lagg MAC after removing the first port: got %v, want %v", got, want)
	}
	checkMACs(t, "removed port", mac(1, 0), e[0])
	checkMACs(t, "remaining member", want, e[1])
}

func TestSetMAC(t *testing.T) {
	l := newLagg(t, nil)
	e := wireEnds(1500, 1500)
	addPorts(t, l, e[0], e[1])
	set := tcpip.LinkAddress("\x06\x00\x00\x00\x00\x01")
	if err := l.Update(func(c *lagg.Config) { c.MAC = set }); err != nil {
		t.Fatal(err)
	}
	checkMACs(t, "after SetMAC", set, e[0], e[1])
	remove(t, l, e[0].Name())
	if got := l.LinkAddress(); got != set {
		t.Errorf("user-set MAC after removing the first port: got %v, want it kept, %v", got, set)
	}

	for _, tc := range []struct {
		name string
		mac  tcpip.LinkAddress
	}{
		{"multicast", "\x01\x00\x5e\x00\x00\x01"},
		{"broadcast", "\xff\xff\xff\xff\xff\xff"},
		{"zero", "\x00\x00\x00\x00\x00\x00"},
		{"short", "\x02\x00\x00\x00\x01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := l.Update(func(c *lagg.Config) { c.MAC = tc.mac }); err == nil {
				t.Errorf("SetMAC(%v): got nil error, want refused", tc.mac)
			}
			if got := l.LinkAddress(); got != set {
				t.Errorf("lagg MAC after a refused SetMAC: got %v, want %v", got, set)
			}
			checkMACs(t, "after a refused SetMAC", set, e[1])
			o := options(fmt.Sprintf("badmac%d", nextID()), "failover")
			o.MAC = tc.mac
			if l2, err := lagg.New(o); err == nil {
				l2.Close()
				t.Errorf("New with MAC %v: got nil error, want refused", tc.mac)
			}
		})
	}
}
