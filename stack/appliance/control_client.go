package appliance

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// ControlCall sends req to the control socket at path and returns the
// response; a response that reports an error comes back as an error.
func ControlCall(path string, req ControlRequest) (*ControlResponse, error) {
	c, r, err := controlDo(path, req)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	return readResponse(path, r)
}

// ControlCapture starts a capture (req.Cmd is set to capture) and returns
// the pcap stream (a *CaptureStream, see StartCapture); closing it stops
// the capture.
func ControlCapture(path string, req ControlRequest) (io.ReadCloser, error) {
	s, err := StartCapture(path, req)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func controlDo(path string, req ControlRequest) (net.Conn, *bufio.Reader, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, nil, dialError(path, err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		c.Close()
		return nil, nil, err
	}
	r := bufio.NewReader(c)
	if _, err := c.Write(append(b, '\n')); err != nil {
		// A server that refuses us answers and closes before reading:
		// its answer says why.
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		resp, rerr := readResponse(path, r)
		c.Close()
		if rerr != nil && resp != nil {
			return nil, nil, rerr
		}
		return nil, nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return c, r, nil
}

func readResponse(path string, r *bufio.Reader) (*ControlResponse, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	var resp ControlResponse
	if err := json.Unmarshal(line, &resp); err != nil {
		return nil, fmt.Errorf("control socket %s: bad answer: %w", path, err)
	}
	if !resp.OK {
		if resp.Error == "" {
			resp.Error = "failed (no reason given)"
		}
		return &resp, errors.New(resp.Error)
	}
	return &resp, nil
}

// dialError explains the usual reasons a connection fails.
func dialError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return fmt.Errorf("permission denied on %s: the control socket is owner-only (0600); run as root or as the user that runs ulagg (or, to read status, as a member of its [control] group)", path)
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("cannot reach ulagg at %s: is `ulagg run` running? (%v)", path, err)
	}
	return fmt.Errorf("control socket %s: %w", path, err)
}
