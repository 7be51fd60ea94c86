package integration

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ulagg/ulagg/config"
	"github.com/ulagg/ulagg/internal/lab"
	"github.com/ulagg/ulagg/internal/testkit"
)

// TestFailoverTAP is TestFailoverAFPacket over two TAP devices that ulagg
// creates in a test namespace; the kernel host is a bridge over the TAPs
// in that same namespace. When the appliance closes, the TAPs are gone.
func TestFailoverTAP(t *testing.T) {
	lb := newLab(t)
	ns, err := lb.AddNS("t")
	if err != nil {
		t.Fatal(err)
	}
	taps := []string{testPrefix + "t0", testPrefix + "t1"}
	lc := laggConfig(config.ProtoFailover)
	for i, name := range taps {
		lc.Ports = append(lc.Ports, config.Port{Name: name, Kind: "tap", Priority: uint16(1000 * (i + 1))})
	}
	ap := startAppliance(t, lc, appOptions{netns: ns})
	for _, name := range taps {
		if li := mustLink(t, ns, name); li.Kind != "tun" || !li.AdminUp {
			t.Fatalf("%s: kind %q admin-up %v, want a TAP that is up", name, li.Kind, li.AdminUp)
		}
	}
	// The TAPs exist only now: bridge them to the host's address.
	if err := lb.Bridge(ns, testPrefix+"br", hostIP+"/24", taps...); err != nil {
		t.Fatal(err)
	}
	testkit.WaitFor(t, 5*time.Second, "ping through the TAP bridge", func() bool {
		r, err := lab.Ping(ns, laggAddr, 1, 0, 200*time.Millisecond)
		return err == nil && r.Received == 1
	})
	failoverScenario(t, ap, ns, ns, taps)

	ap.a.Close()
	for _, name := range taps {
		if _, err := lab.Link(ns, name); err == nil {
			t.Errorf("TAP %s still exists after the appliance closed", name)
		}
	}
}

// TestTAPGSOIPv6 sends a verified echo over IPv6 through a TAP port with
// offloads: the kernel hands the lagg TSO6 super-frames and the lagg writes
// GSO6 ones (the TAP's frame counters say so) through a bridge, and the
// bytes come back intact.
func TestTAPGSOIPv6(t *testing.T) {
	lb := newLab(t)
	ns, err := lb.AddNS("t6")
	if err != nil {
		t.Fatal(err)
	}
	tap := testPrefix + "t6"
	lc := laggConfig(config.ProtoFailover)
	lc.Ports = []config.Port{{Name: tap, Kind: "tap", Priority: 1000}}
	lc.Addresses = append(lc.Addresses, netip.MustParsePrefix("fd3a::2/64"))
	startAppliance(t, lc, appOptions{netns: ns})
	// ulagg turns IPv6 off on its ports: the host's address is on a bridge.
	br := testPrefix + "b6"
	if err := lb.Bridge(ns, br, hostIP+"/24", tap); err != nil {
		t.Fatal(err)
	}
	v6Sysctl(t, ns, br, "0") // new devices may start with IPv6 off
	if err := lab.Run("ip", "-n", ns, "addr", "add", "fd3a::1/64", "dev", br, "nodad"); err != nil {
		t.Fatal(err)
	}
	before := tapFrameStats(t, ns, tap)
	testkit.CheckEcho(t, kernelDialer6(ns, "[fd3a::2]:"+strconv.Itoa(echoPort)), testkit.Bytes(6, 8<<20))
	after := tapFrameStats(t, ns, tap)
	for i, dir := range []string{"gVisor→kernel", "kernel→gVisor"} {
		bytes, pkts := after[2*i]-before[2*i], after[2*i+1]-before[2*i+1]
		if pkts == 0 || bytes/pkts <= 1514 {
			t.Errorf("%s: %d bytes in %d frames: want GSO super-frames (more than 1514 bytes on average)", dir, bytes, pkts)
		}
	}
}

// tapFrameStats reads dev's rx_bytes, rx_packets, tx_bytes and tx_packets
// in ns (the kernel's view: its rx is what the lagg wrote).
func tapFrameStats(t *testing.T, ns, dev string) [4]uint64 {
	t.Helper()
	var v [4]uint64
	for i, f := range []string{"rx_bytes", "rx_packets", "tx_bytes", "tx_packets"} {
		out, err := lab.Output("ip", "netns", "exec", ns, "cat", "/sys/class/net/"+dev+"/statistics/"+f)
		if err != nil {
			t.Fatal(err)
		}
		if v[i], err = strconv.ParseUint(strings.TrimSpace(out), 10, 64); err != nil {
			t.Fatalf("%s %s: %v", dev, f, err)
		}
	}
	return v
}

// kernelDialer6 dials TCP over IPv6 addr from inside namespace ns.
func kernelDialer6(ns, addr string) testkit.Dialer {
	return func(context.Context) (net.Conn, error) { return lab.Dial(ns, "tcp6", addr) }
}
