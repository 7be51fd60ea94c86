package appliance

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ulagg/ulagg/lagg"
)

// Limits of captures. What a capture holds is its queue: frames the data
// path copied and the client has not read yet. The data path never waits
// for a client; a frame that does not fit is dropped and counted, and the
// count is sent at the end (CaptureSummary).
const (
	maxCaptures       = 4       // captures at once; one more is refused
	captureQueue      = 1024    // frames queued per capture
	captureQueueBytes = 4 << 20 // bytes of frames queued per capture
	captureSnaplen    = 262144
	// captureStall ends a capture whose client has not taken a byte for
	// this long: it holds one of the maxCaptures places.
	captureStall = time.Minute
)

// capturedFrame is a copy of one frame, queued for the connection.
type capturedFrame struct {
	t     time.Time
	frame []byte
	n     int // the frame's length on the wire (frame may be shorter)
}

// CaptureSummary is the capture's end record: how many frames were
// written, how many were dropped because the client did not keep up (the
// queue was full), and why the capture ended.
type CaptureSummary struct {
	Frames  int    `json:"frames"`
	Dropped uint64 `json:"dropped"`
	End     string `json:"end"`
}

// The end record follows the last frame: a pcap record header whose two
// timestamp words are all ones (no frame has 4294967295 microseconds) and
// whose lengths are those of the CaptureSummary as JSON that follows.
const endRecordStamp = 0xffffffff

// capture streams what a lagg (or one of its ports) sends and receives as
// pcap until req.Count frames were written, the client closes or
// half-closes the connection, or the server stops; then it sends the end
// record, unless the client stopped reading. The data path only copies
// frames into a bounded queue and drops them when it is full; this
// goroutine does the writing.
func (s *ControlServer) capture(c net.Conn, req ControlRequest) {
	l := s.a.Lagg(req.Lagg)
	switch {
	case req.Lagg == "":
		writeResponse(c, fail(fmt.Errorf("capture: which lagg?")))
		return
	case l == nil:
		writeResponse(c, fail(fmt.Errorf("capture: %s: no such lagg", req.Lagg)))
		return
	case req.Count < 0:
		writeResponse(c, fail(fmt.Errorf("capture: count %d is negative", req.Count)))
		return
	}
	if req.Port != "" {
		if st := l.Status(); st.Port(req.Port) == nil {
			writeResponse(c, fail(fmt.Errorf("capture: %s is not a port of %s", req.Port, req.Lagg)))
			return
		}
	}
	release, err := s.takeStream("capture", streamCapture, maxCaptures)
	if err != nil {
		writeResponse(c, fail(err))
		return
	}
	defer release()
	writeResponse(c, ControlResponse{OK: true})

	gone := s.clientGone(c) // ends the capture

	q := make(chan capturedFrame, captureQueue)
	var queued atomic.Int64 // bytes in q
	var dropped atomic.Uint64
	drop := func() {
		dropped.Add(1)
		s.a.captureDrops.Add(1)
	}
	stop := l.Capture(req.Port, func(t time.Time, _ string, _ lagg.Direction, frame []byte) {
		data := frame
		if len(data) > captureSnaplen {
			data = data[:captureSnaplen]
		}
		if len(q) == cap(q) {
			drop()
			return
		}
		if queued.Add(int64(len(data))) > captureQueueBytes {
			queued.Add(-int64(len(data)))
			drop()
			return
		}
		select {
		case q <- capturedFrame{t: t, frame: append([]byte(nil), data...), n: len(frame)}:
		default:
			queued.Add(-int64(len(data)))
			drop()
		}
	})
	defer stop()
	s.log.Info("capture started", "lagg", req.Lagg, "port", req.Port, "count", req.Count)

	cw := &stallWriter{c: c}
	bw := bufio.NewWriter(cw)
	pw := pcapgo.NewWriter(bw)
	n := 0
	err = pw.WriteFileHeader(captureSnaplen, layers.LinkTypeEthernet)
	if err == nil {
		err = bw.Flush()
	}
	for err == nil && (req.Count == 0 || n < req.Count) {
		select {
		case f := <-q:
			queued.Add(-int64(len(f.frame)))
			err = pw.WritePacket(gopacket.CaptureInfo{Timestamp: f.t, CaptureLength: len(f.frame), Length: f.n}, f.frame)
			n++
			if err == nil && len(q) == 0 {
				err = bw.Flush()
			}
		case <-gone:
			err = io.EOF
		case <-s.done:
			err = net.ErrClosed
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	stop()
	sum := CaptureSummary{Frames: n, Dropped: dropped.Load(), End: streamEnd(err)}
	if err == nil || err == io.EOF || err == net.ErrClosed {
		// Count reached, the client stopped the capture (it reads on until
		// the end record) or the server stops: say how it went.
		if werr := writeEndRecord(bw, sum); werr == nil {
			_ = bw.Flush()
		}
	}
	s.log.Info("capture ended", "lagg", req.Lagg, "port", req.Port, "frames", n, "dropped", sum.Dropped, "why", sum.End)
}

// stallWriter writes to c with a deadline of captureStall from each
// write: a client that takes nothing for that long ends its capture.
type stallWriter struct{ c net.Conn }

func (w *stallWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(captureStall))
	n, err := w.c.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errStalled
	}
	return n, err
}

var errStalled = errors.New("client stopped reading")

func writeEndRecord(w io.Writer, sum CaptureSummary) error {
	body, err := json.Marshal(sum)
	if err != nil {
		return err
	}
	var h [16]byte
	binary.LittleEndian.PutUint32(h[0:], endRecordStamp)
	binary.LittleEndian.PutUint32(h[4:], endRecordStamp)
	binary.LittleEndian.PutUint32(h[8:], uint32(len(body)))
	binary.LittleEndian.PutUint32(h[12:], uint32(len(body)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err = w.Write(body)
	return err
}
