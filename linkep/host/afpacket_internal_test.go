package host

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestAFRxErrorsBackoff(t *testing.T) {
	var e afRxErrors
	want := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond}
	for i, w := range want {
		if first := e.fail(); first != (i == 0) {
			t.Errorf("failure %d: fail() = %v", i+1, first)
		}
		if got := e.pause(); got != w {
			t.Errorf("after %d failures: pause %v, want %v", i+1, got, w)
		}
	}
	for range 20 {
		e.fail()
	}
	if got := e.pause(); got != afRxBackoffMax {
		t.Errorf("after many failures: pause %v, want %v", got, afRxBackoffMax)
	}
	e.last = time.Now().Add(-afRxErrorsForget - time.Second)
	if !e.fail() || e.pause() != 0 {
		t.Errorf("a failure long after the last: n %d, pause %v; want a new streak", e.n, e.pause())
	}
}

// putCmsg writes a control message at b[off:] and returns the next offset.
func putCmsg(b []byte, off int, level, typ int32, data []byte) int {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[off]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(len(data)))
	copy(b[off+unix.CmsgLen(0):], data)
	return off + unix.CmsgSpace(len(data))
}

func TestParseAuxdata(t *testing.T) {
	var ctl [16]uint64
	b := unsafe.Slice((*byte)(unsafe.Pointer(&ctl[0])), len(ctl)*8)
	aux := unix.TpacketAuxdata{Status: unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_CSUM_VALID, Len: 99, Vlan_tci: 100, Vlan_tpid: 0x88a8}
	auxb := unsafe.Slice((*byte)(unsafe.Pointer(&aux)), unsafe.Sizeof(aux))
	off := putCmsg(b, 0, unix.SOL_SOCKET, unix.SCM_TIMESTAMP, make([]byte, 16))
	end := putCmsg(b, off, unix.SOL_PACKET, unix.PACKET_AUXDATA, auxb)

	if got, ok := parseAuxdata(ctl[:], end); !ok || got != aux {
		t.Errorf("after another message: %+v, %v; want %+v", got, ok, aux)
	}
	if _, ok := parseAuxdata(ctl[:], end-8); ok {
		t.Error("found auxdata cut short")
	}
	if _, ok := parseAuxdata(ctl[:], off); ok {
		t.Error("found auxdata past the control length")
	}
	if _, ok := parseAuxdata(ctl[:], 0); ok {
		t.Error("found auxdata in nothing")
	}
	clear(ctl[:])
	putCmsg(b, 0, unix.SOL_PACKET, unix.PACKET_AUXDATA, auxb)
	(*unix.Cmsghdr)(unsafe.Pointer(&b[0])).SetLen(4) // broken
	if _, ok := parseAuxdata(ctl[:], len(b)); ok {
		t.Error("found auxdata behind a broken header")
	}
}

// TestAFRxSlotTake fills a slot's iovecs as the kernel would and checks the
// frames taken out of it, with and without a tag to put back, across views.
func TestAFRxSlotTake(t *testing.T) {
	for _, vnet := range []bool{false, true} {
		r := newAFRx(-1, -1, vnet)
		for _, n := range []int{14, 60, 124, 125, 1514, 5000, 65549} {
			for _, tpid := range []uint16{0, 0x8100} {
				frame := make([]byte, n)
				for i := range frame {
					frame[i] = byte(i*7 + i>>8)
				}
				r.renew()
				s := &r.slots[0]
				rest := frame
				for _, iov := range s.iovs[1:] {
					c := copy(unsafe.Slice(iov.Base, iov.Len), rest)
					rest = rest[c:]
				}
				if len(rest) != 0 {
					t.Fatalf("a %d-byte frame does not fit a slot", n)
				}
				buf := s.take(n, tpid, 0x6064)
				want := frame
				if tpid != 0 {
					want = binary.BigEndian.AppendUint16(append(append([]byte{}, frame[:12]...), 0x81, 0x00), 0x6064)
					want = append(want, frame[12:]...)
				}
				if got := buf.Flatten(); !bytes.Equal(got, want) {
					t.Errorf("vnet %v, %d bytes, tpid %#x: got %d bytes, differing from the %d expected", vnet, n, tpid, len(got), len(want))
				}
				buf.Release()
				r.used = 1
			}
		}
		r.release()
	}
}

// TestAFRxAdaptiveBatch: a quiet port reads into one slot and holds views
// for it alone; under load it fills every slot; idle again, it gives the
// other slots' views back (7 × 74 KiB a port).
func TestAFRxAdaptiveBatch(t *testing.T) {
	r := newAFRx(-1, -1, false)
	defer r.release()
	held := func() (slots int) {
		for k := range r.slots {
			if r.slots[k].views[0] != nil {
				slots++
			}
		}
		return slots
	}
	r.renew()
	if r.batch != 1 || held() != 1 {
		t.Fatalf("new: batch %d, %d slots with views; want 1 and 1", r.batch, held())
	}
	r.grow()
	r.renew()
	if r.batch != afRxBatch || held() != afRxBatch {
		t.Fatalf("grown: batch %d, %d slots with views; want %d and %d", r.batch, held(), afRxBatch, afRxBatch)
	}
	r.shrink()
	if r.batch != 1 || held() != 1 {
		t.Fatalf("shrunk: batch %d, %d slots with views; want 1 and 1", r.batch, held())
	}
}
