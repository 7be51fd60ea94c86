package integration

import (
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ulagg/ulagg/internal/testkit"
	"github.com/ulagg/ulagg/lagg"
	"github.com/ulagg/ulagg/stack/appliance"
	"gvisor.dev/gvisor/pkg/tcpip"
)

// TestPortMetadataReachesLagg: through the AF_PACKET receive loop, a frame
// that arrived with an 802.1Q tag reaches the lagg still tagged (the kernel
// strips the tag on veth; the port puts it back from PACKET_AUXDATA), and a
// flood the lagg cannot keep up with shows as kernel drops in the port's
// status (PACKET_STATISTICS).
func TestPortMetadataReachesLagg(t *testing.T) {
	tp := newTopo(t, 2)
	ap := startAppliance(t, laggConfig("failover", tp.ports...), appOptions{netns: tp.lag})
	mac := ap.l.LinkAddress()

	var tagged, slow atomic.Int64
	var tci atomic.Uint32
	stop := ap.l.Capture(tp.ports[0], func(_ time.Time, _ string, dir lagg.Direction, frame []byte) {
		if dir != lagg.In || len(frame) < 18 || string(frame[:6]) != string(mac) {
			return
		}
		if binary.BigEndian.Uint16(frame[12:]) == 0x8100 {
			tagged.Add(1)
			tci.Store(uint32(binary.BigEndian.Uint16(frame[14:])))
		}
		if slow.Load() > 0 {
			slow.Add(-1)
			time.Sleep(time.Millisecond) // hold the receive goroutine: the socket fills
		}
	})
	defer stop()

	inj := newInjector(t, tp.host, tp.peers[0])
	src, err := net.ParseMAC(mustLink(t, tp.host, tp.bridge).MAC)
	if err != nil {
		t.Fatal(err)
	}
	frame := icmpEchoFrame(mac, tcpip.LinkAddress(src), hostAddr.As4(), laggAddr.As4(), 7, 1)
	vlan := make([]byte, 0, len(frame)+4)
	vlan = append(vlan, frame[:12]...)
	vlan = append(vlan, 0x81, 0x00, 0x20, 0x64) // PCP 1, VID 100
	vlan = append(vlan, frame[12:]...)
	inj.send(t, vlan)
	testkit.WaitFor(t, 5*time.Second, "the tagged frame at the lagg", func() bool { return tagged.Load() == 1 })
	if got := tci.Load(); got != 0x2064 {
		t.Errorf("TCI at the lagg: got %#x, want 0x2064", got)
	}

	kernelDrops := func() uint64 {
		st := ap.l.Status()
		return st.Port(tp.ports[0]).KernelDrops
	}
	before := kernelDrops()
	const flood = 20000
	slow.Store(flood)
	for range flood {
		inj.send(t, frame)
	}
	testkit.WaitFor(t, 30*time.Second, "kernel drops in the port status", func() bool {
		return kernelDrops() > before
	})
	for _, lj := range appliance.StatusJSON(ap.a.Status()) {
		for _, pj := range lj.Ports {
			if pj.Name == tp.ports[0] && pj.KernelDrops == 0 {
				t.Errorf("status JSON of %s: kernel_drops 0 after the flood", pj.Name)
			}
		}
	}
	t.Logf("measure: %d frames flooded into a port held at 1 ms/frame: %d kernel drops seen in status",
		flood, kernelDrops()-before)
}
