package appliance

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// CaptureStream is a running capture as its client sees it: Read returns
// the pcap stream without the server's end record, then io.EOF; Summary
// says how the capture ended once the end record was read.
type CaptureStream struct {
	c *net.UnixConn
	r *bufio.Reader

	order   binary.ByteOrder // of the stream; nil until the file header was read
	out     []byte           // header bytes read and not yet returned
	remain  int              // bytes of the current frame not yet returned
	summary *CaptureSummary
	err     error // sticky
}

// StartCapture starts a capture (req.Cmd is set to capture) on the control
// socket at path.
func StartCapture(path string, req ControlRequest) (*CaptureStream, error) {
	req.Cmd = CmdCapture
	c, r, err := controlDo(path, req)
	if err != nil {
		return nil, err
	}
	if _, err := readResponse(path, r); err != nil {
		c.Close()
		return nil, err
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("control socket %s: not a unix socket", path)
	}
	return &CaptureStream{c: uc, r: r}, nil
}

// Read returns the pcap stream.
func (s *CaptureStream) Read(p []byte) (int, error) {
	for {
		switch {
		case s.err != nil:
			return 0, s.err
		case len(s.out) > 0:
			n := copy(p, s.out)
			s.out = s.out[n:]
			return n, nil
		case s.remain > 0:
			n, err := s.r.Read(p[:min(len(p), s.remain)])
			s.remain -= n
			if err == io.EOF && s.remain > 0 {
				err = io.ErrUnexpectedEOF
			}
			if err != nil && err != io.EOF {
				s.err = err
			}
			return n, err
		case s.order == nil:
			s.err = s.fileHeader()
		default:
			s.err = s.recordHeader()
		}
	}
}

func (s *CaptureStream) fileHeader() error {
	h := make([]byte, 24)
	if _, err := io.ReadFull(s.r, h); err != nil {
		return err
	}
	switch binary.LittleEndian.Uint32(h) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		s.order = binary.LittleEndian
	default:
		s.order = binary.BigEndian
	}
	s.out = h
	return nil
}

// recordHeader reads the next record's header: a frame's, passed on, or
// the end record, read whole.
func (s *CaptureStream) recordHeader() error {
	h := make([]byte, 16)
	if _, err := io.ReadFull(s.r, h); err != nil {
		if err == io.ErrUnexpectedEOF {
			return err
		}
		return io.EOF // the server went away without an end record
	}
	caplen := s.order.Uint32(h[8:])
	if s.order.Uint32(h[0:]) == endRecordStamp && s.order.Uint32(h[4:]) == endRecordStamp {
		if caplen > 4096 {
			return fmt.Errorf("capture: end record of %d bytes", caplen)
		}
		body := make([]byte, caplen)
		if _, err := io.ReadFull(s.r, body); err != nil {
			return fmt.Errorf("capture: reading the end record: %w", err)
		}
		var sum CaptureSummary
		if err := json.Unmarshal(body, &sum); err != nil {
			return fmt.Errorf("capture: bad end record: %w", err)
		}
		s.summary = &sum
		return io.EOF
	}
	if caplen > captureSnaplen {
		return fmt.Errorf("capture: a frame of %d bytes, more than the snap length %d", caplen, captureSnaplen)
	}
	s.out, s.remain = h, int(caplen)
	return nil
}

// Summary returns the end record, once Read has returned io.EOF after
// it; ok is false if the server did not send one (it stopped, or the
// capture ended because the client stopped reading).
func (s *CaptureStream) Summary() (sum CaptureSummary, ok bool) {
	if s.summary == nil {
		return CaptureSummary{}, false
	}
	return *s.summary, true
}

// Stop asks the server to end the capture (it half-closes the
// connection): Read then returns what the server still sends and the end
// record. A server that does not answer within wait ends the reading.
func (s *CaptureStream) Stop(wait time.Duration) error {
	_ = s.c.SetReadDeadline(time.Now().Add(wait))
	if err := s.c.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Close ends the capture at once.
func (s *CaptureStream) Close() error { return s.c.Close() }
