package lacp_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/ulagg/ulagg/lagg/lacp"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ovsLACPDU is laid out like Open vSwitch's compose_lacp_pdu output
// (collector delay 0, everything after it zero) from the lab partner
// system 02:00:00:00:0c:01 to our port 1.
const ovsLACPDU = `
0180c2000002 5e00000c0101 8809
01 01
01 14 fffe 02000000 0c01 0005 ffff 0002 3f 000000
02 14 8000 02000000 0001 0001 8000 0001 3d 000000
03 10 0000 000000000000000000000000
0000` + " 00000000000000000000000000000000000000000000000000" +
	"00000000000000000000000000000000000000000000000000"

func TestDecodeOVS(t *testing.T) {
	f := unhex(t, ovsLACPDU)
	if len(f) != 124 {
		t.Fatalf("fixture length: got %d, want 124", len(f))
	}
	got, err := lacp.DecodeLACPDU(f)
	if err != nil {
		t.Fatalf("DecodeLACPDU: %v", err)
	}
	want := lacp.LACPDU{
		Version: 1,
		Actor:   lacp.Info{SystemPriority: 0xfffe, System: [6]byte{2, 0, 0, 0, 0x0c, 1}, Key: 5, PortPriority: 0xffff, Port: 2, State: 0x3f},
		Partner: lacp.Info{SystemPriority: 0x8000, System: [6]byte{2, 0, 0, 0, 0, 1}, Key: 1, PortPriority: 0x8000, Port: 1, State: 0x3d},
	}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	// Our encoder produces the same octets for the same PDU.
	if enc := want.AppendFrame(nil, [6]byte(f[6:12])); string(enc) != string(f) {
		t.Errorf("AppendFrame:\n got %x\nwant %x", enc, f)
	}
}

func TestRoundTrip(t *testing.T) {
	src := [6]byte{0x02, 0xaa, 0xbb, 0xcc, 0xdd, 0xee}
	pdus := []lacp.LACPDU{
		{Version: 1},
		{Version: 1, Actor: lacp.Info{1, [6]byte{1, 2, 3, 4, 5, 6}, 3, 4, 5, 0xff}, Partner: lacp.Info{0xffff, [6]byte{6, 5, 4, 3, 2, 1}, 0xfffe, 0xfffd, 0xfffc, 0x01}, CollectorMaxDelay: 0x1234},
		{Version: 2, Actor: lacp.Info{Port: 9}},
	}
	for i, p := range pdus {
		f := p.AppendFrame([]byte("prefix"), src)
		if len(f) != 6+124 || string(f[:6]) != "prefix" {
			t.Fatalf("pdu %d: got len %d, want prefix kept and 124 octets", i, len(f))
		}
		got, err := lacp.DecodeLACPDU(f[6:])
		if err != nil || got != p {
			t.Errorf("pdu %d: got %+v, %v, want %+v", i, got, err, p)
		}
	}
	for _, m := range []lacp.MarkerPDU{
		{RequesterPort: 1, RequesterSystem: src, TransactionID: 1},
		{Response: true, RequesterPort: 0xffff, TransactionID: 0xffffffff},
	} {
		f := m.AppendFrame(nil, src)
		got, err := lacp.DecodeMarker(f)
		if err != nil || got != m || len(f) != 124 {
			t.Errorf("marker: got %+v, %v (len %d), want %+v", got, err, len(f), m)
		}
	}
}

func TestStateString(t *testing.T) {
	for _, tc := range []struct {
		s    lacp.State
		want string
	}{
		{0, "0x0"},
		{0x3d, "0x3d<ACTIVITY,AGGREGATION,SYNC,COLLECTING,DISTRIBUTING>"},
		{0x01, "0x1<ACTIVITY>"},
		{0xc0, "0xc0<DEFAULTED,EXPIRED>"},
		{0xff, "0xff<ACTIVITY,TIMEOUT,AGGREGATION,SYNC,COLLECTING,DISTRIBUTING,DEFAULTED,EXPIRED>"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("State(%#x): got %q, want %q", uint8(tc.s), got, tc.want)
		}
	}
}

var (
	peerSys = [6]byte{0x02, 9, 9, 9, 9, 9}
	ourSys  = [6]byte{0x02, 0, 0, 0, 0, 1}
)

// peerFrame is a valid LACPDU from peerSys, changed by mod.
func peerFrame(mod func(b []byte)) []byte {
	p := lacp.LACPDU{Version: 1,
		Actor: lacp.Info{SystemPriority: 100, System: peerSys, Key: 7, PortPriority: 1, Port: 3, State: 0x05}}
	f := p.AppendFrame(nil, [6]byte{0x02, 9, 9, 9, 9, 0x10})
	if mod != nil {
		mod(f)
	}
	return f
}

// rxCounts names the receive counters a frame can land in.
func rxCounts(c lacp.Counters) map[string]uint64 {
	return map[string]uint64{
		"rx": c.LACPDUsRx, "malformed": c.MalformedRx, "unknown": c.UnknownRx,
		"loopback": c.LoopbackRx, "marker": c.MarkerRx,
	}
}

func TestReceiveValidation(t *testing.T) {
	const pl = 14 // payload offset
	withMarker := func(mod func(b []byte)) []byte { f := markerFrame(1); mod(f); return f }
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string // the one counter that must be 1
	}{
		{"valid", peerFrame(nil), "rx"},
		{"empty", nil, "malformed"},
		{"short header", peerFrame(nil)[:10], "malformed"},
		{"header only", peerFrame(nil)[:14], "malformed"},
		{"subtype only", peerFrame(nil)[:15], "malformed"},
		{"truncated in actor", peerFrame(nil)[:30], "malformed"},
		{"truncated before terminator", peerFrame(nil)[:pl+59], "malformed"},
		{"no reserved tail", peerFrame(nil)[:pl+60], "rx"},
		{"actor length 19", peerFrame(func(b []byte) { b[pl+3] = 19 }), "malformed"},
		{"actor type 2", peerFrame(func(b []byte) { b[pl+2] = 2 }), "malformed"},
		{"partner type 1", peerFrame(func(b []byte) { b[pl+22] = 1 }), "malformed"},
		{"partner length 0", peerFrame(func(b []byte) { b[pl+23] = 0 }), "malformed"},
		{"collector length 15", peerFrame(func(b []byte) { b[pl+43] = 15 }), "malformed"},
		{"v1 extra TLV", peerFrame(func(b []byte) { b[pl+58], b[pl+59] = 4, 4 }), "malformed"},
		{"version 0", peerFrame(func(b []byte) { b[pl+1] = 0 }), "malformed"},
		{"version 2 extra TLV", peerFrame(func(b []byte) { b[pl+1], b[pl+58], b[pl+59] = 2, 4, 4 }), "rx"},
		{"version 255", peerFrame(func(b []byte) { b[pl+1] = 255 }), "rx"},
		{"version 2 TLV overruns", peerFrame(func(b []byte) { b[pl+1], b[pl+58], b[pl+59] = 2, 4, 200 }), "malformed"},
		{"version 2 TLV length 1", peerFrame(func(b []byte) { b[pl+1], b[pl+58], b[pl+59] = 2, 4, 1 }), "malformed"},
		{"version 2 no terminator", peerFrame(func(b []byte) {
			b[pl+1] = 2
			for i := pl + 58; i+1 < len(b); i += 2 {
				b[i], b[i+1] = 9, 2
			}
		}), "malformed"},
		{"marker", markerFrame(1), "marker"},
		{"marker TLV type 3", withMarker(func(b []byte) { b[pl+2] = 3 }), "malformed"},
		{"marker length 15", withMarker(func(b []byte) { b[pl+3] = 15 }), "malformed"},
		{"marker version 0", withMarker(func(b []byte) { b[pl+1] = 0 }), "malformed"},
		{"marker truncated", markerFrame(1)[:pl+19], "malformed"},
		{"marker bad terminator", withMarker(func(b []byte) { b[pl+18] = 1 }), "malformed"},
		{"IPv4 ethertype", peerFrame(func(b []byte) { b[12], b[13] = 0x08, 0x00 }), "unknown"},
		{"VLAN tagged", peerFrame(func(b []byte) { b[12], b[13] = 0x81, 0x00 }), "unknown"},
		{"OAM subtype", peerFrame(func(b []byte) { b[pl] = 3 }), "unknown"},
		{"loopback", peerFrame(func(b []byte) { copy(b[pl+6:], ourSys[:]); b[pl+4], b[pl+5] = 0x80, 0 }), "loopback"},
		{"same MAC, other priority", peerFrame(func(b []byte) { copy(b[pl+6:], ourSys[:]) }), "rx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := lacp.NewEngine(lacp.DefaultConfig(ourSys, 1), outFunc(func(lacp.PortID, []byte) {}), t0)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.AddPort(1, [6]byte{}, lacp.PortConfig{}, true, t0); err != nil {
				t.Fatal(err)
			}
			e.Receive(1, tc.frame, t0)
			ps, _ := e.Port(1)
			for name, got := range rxCounts(ps.Counters) {
				want := uint64(0)
				if name == tc.want {
					want = 1
				}
				if got != want {
					t.Errorf("%s: got %d, want %d", name, got, want)
				}
			}
			if got, want := ps.Rx, map[bool]string{true: "CURRENT", false: "EXPIRED"}[tc.want == "rx"]; got != want {
				t.Errorf("rx state: got %s, want %s", got, want)
			}
		})
	}
}
