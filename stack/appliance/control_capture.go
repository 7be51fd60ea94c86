package appliance

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/ulagg/ulagg/lagg"
)

// capturedFrame is a copy of one frame, queued for the connection.
type capturedFrame struct {
	t     time.Time
	frame []byte
}

// capture streams what a lagg (or one of its ports) sends and receives as
// pcap until req.Count frames were written, the client goes away or the
// server stops. The data path only copies frames into a bounded queue and
// drops them when it is full; this goroutine does the writing.
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
	writeResponse(c, ControlResponse{OK: true})

	// The client sends nothing more: a read that returns means it closed
	// (or half-closed) the connection, which ends the capture.
	gone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(io.Discard, c)
		close(gone)
	}()

	q := make(chan capturedFrame, captureQueue)
	var dropped atomic.Uint64
	stop := l.Capture(req.Port, func(t time.Time, _ string, _ lagg.Direction, frame []byte) {
		select {
		case q <- capturedFrame{t: t, frame: append([]byte(nil), frame...)}:
		default:
			dropped.Add(1)
		}
	})
	defer stop()
	s.log.Info("capture started", "lagg", req.Lagg, "port", req.Port, "count", req.Count)

	bw := bufio.NewWriter(c)
	pw := pcapgo.NewWriter(bw)
	n, err := 0, pw.WriteFileHeader(captureSnaplen, layers.LinkTypeEthernet)
	if err == nil {
		err = bw.Flush()
	}
	for err == nil && (req.Count == 0 || n < req.Count) {
		select {
		case f := <-q:
			data := f.frame
			if len(data) > captureSnaplen {
				data = data[:captureSnaplen]
			}
			err = pw.WritePacket(gopacket.CaptureInfo{Timestamp: f.t, CaptureLength: len(data), Length: len(f.frame)}, data)
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
	s.log.Info("capture ended", "lagg", req.Lagg, "port", req.Port, "frames", n, "dropped", dropped.Load(), "why", captureEnd(err))
}

func captureEnd(err error) string {
	switch err {
	case nil:
		return "count reached"
	case io.EOF:
		return "client closed"
	case net.ErrClosed:
		return "server stopping"
	}
	return err.Error()
}
